-- Argo CD health check for dingbind Tenants.
-- Install it in argocd-cm as resource.customizations.health.dingbind.dev_Tenant
-- (see docs/argocd.md). Argo CD runs it with `obj` set to the live Tenant.
-- It reads the states kstatus reads: Stalled=True is Degraded, Reconciling=True
-- is Progressing, Ready=True is Healthy.
local hs = {}

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended (spec.suspend)"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for dingbind to reconcile the tenant"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "dingbind has not yet observed generation " .. tostring(generation)
  return hs
end

local function find(type)
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == type then
      return condition
    end
  end
  return nil
end

local function summary(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end

local stalled = find("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = summary(stalled)
  return hs
end

local reconciling = find("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = summary(reconciling)
  return hs
end

-- A status written before dingbind set Stalled and Reconciling: the Ready
-- reasons that dingbind reports as Stalled (src/core/kstatus.rs).
local needs_a_person = {
  InvalidCredentials = true,
  SecretNotFound = true,
  CorpMismatch = true,
  AppNotFound = true,
  SuiteNotConfigured = true,
  AppUninstalled = true,
  RebindForbidden = true,
  DeletionThresholdExceeded = true,
  BindingChanged = true,
  AppStateUnproved = true,
  TrialExpired = true,
}

local ready = find("Ready")
if ready ~= nil then
  if ready.status == "True" then
    hs.status = "Healthy"
  elseif ready.status == "False" and needs_a_person[ready.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = summary(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
