-- Argo CD health check for dingbind Tenants.
-- Install it in argocd-cm as resource.customizations.health.dingbind.dev_Tenant
-- (see docs/argocd.md). Argo CD runs it with `obj` set to the live Tenant.
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

-- Reasons for Ready=False that need a person; anything else is transient.
local needs_action = {
  InvalidCredentials = true,
  SecretNotFound = true,
  CorpMismatch = true,
  AppNotFound = true,
  CreatorAccountIncomplete = true,
  AppStillEnabled = true,
  RebindForbidden = true,
  DeletionThresholdExceeded = true,
}

for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    local message = condition.message or ""
    if condition.status == "True" then
      hs.status = "Healthy"
    elseif condition.status == "False" and needs_action[condition.reason] then
      hs.status = "Degraded"
    else
      hs.status = "Progressing"
    end
    hs.message = (condition.reason or "") .. ": " .. message
    return hs
  end
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
