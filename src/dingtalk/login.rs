//! The login endpoints of [`AppClient`] (`dingtalk-events-isv-login.md` §4):
//! who a login code belongs to, for every kind of app
//! ([`TokenSource`](super::TokenSource): an internal app's appKey and
//! appSecret, a marketplace app's suiteKey and suiteSecret).
//!
//! - In-app (the workbench, JSAPI `requestAuthCode`): [`AppClient::user_by_code`],
//!   with the app's or the enterprise's token.
//! - Web (QR or account login, the redirect's `authCode`):
//!   [`AppClient::user_access_token`], then [`AppClient::me`] with the user's
//!   token for the unionId only, then [`AppClient::userid_by_unionid`] with the
//!   app's token to map it to the organization's member.
//!
//! A code is single-use: the two calls that take one are never sent twice
//! after a 5xx or a timeout (`retry.rs`). Codes and user tokens are redacted
//! from every error, as the app's token and secret are.

use reqwest::Method;

use super::AppClient;
use super::error::{Error, ErrorKind};
use super::secret::Secret;
use super::transport::Request;
use super::types::{
    Api, CodeUser, GRANT_AUTHORIZATION_CODE, Me, UnionIdRequest, UnionIdResult,
    UserAccessTokenRequest, UserAccessTokenResponse, UserInfoByCodeRequest, UserInfoByCodeResult,
    UserToken,
};

impl AppClient {
    /// `POST topapi/v2/user/getuserinfo` `{code}`: the member an in-app
    /// login code belongs to. Errors: [`ErrorKind::CodeInvalid`] (40078:
    /// unknown, expired, used, or another app's), [`ErrorKind::NotInScope`]
    /// (40079: outside the app's visible scope).
    pub async fn user_by_code(&self, code: &Secret) -> Result<CodeUser, Error> {
        let body = UserInfoByCodeRequest { code: code.clone() };
        let req = Request::new(Api::UserInfoByCode, Method::POST)
            .json(&body)?
            .secret(code);
        let result: UserInfoByCodeResult = self.call(req).await?;
        Ok(result.into())
    }

    /// `POST /v1.0/oauth2/userAccessToken` `{clientId, clientSecret, code,
    /// grantType: "authorization_code"}`: the token of the user a web login
    /// code belongs to (the refresh token is dropped). Errors:
    /// [`ErrorKind::CodeInvalid`] for a bad, expired or used code,
    /// [`ErrorKind::InvalidCredentials`] for the app's.
    pub async fn user_access_token(&self, code: &Secret) -> Result<UserToken, Error> {
        let (client_id, client_secret) = self.inner.source.client_credentials();
        let body = UserAccessTokenRequest {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
            code: Some(code.clone()),
            refresh_token: None,
            grant_type: GRANT_AUTHORIZATION_CODE.into(),
        };
        let req = Request::new(Api::UserAccessToken, Method::POST)
            .json(&body)?
            .secret(code);
        let answer: UserAccessTokenResponse = self.call(req).await?;
        Ok(UserToken {
            access_token: answer.access_token,
            corp_id: answer.corp_id.filter(|c| !c.is_empty()),
            expire_in: answer.expire_in,
        })
    }

    /// `GET /v1.0/contact/users/me` with the **user's** token: the DingTalk
    /// account's unionId (and openId, nick). Email and mobile are not read:
    /// they are the account's, across organizations, never the
    /// organization's. A missing or empty unionId is a decode error.
    pub async fn me(&self, user_token: &Secret) -> Result<Me, Error> {
        let req = Request::new(Api::UsersMe, Method::GET).user_token(user_token);
        let me: Me = self.call(req).await?;
        if me.union_id.is_empty() {
            return Err(Error::Decode {
                endpoint: Api::UsersMe,
                http_status: 200,
                message: "users/me answered an empty unionId".into(),
            });
        }
        Ok(Me {
            union_id: me.union_id,
            open_id: me.open_id.filter(|s| !s.is_empty()),
            nick: me.nick.filter(|s| !s.is_empty()),
        })
    }

    /// `POST topapi/user/getbyunionid` `{unionid}`: the userid of the
    /// organization's member with this unionid. `None` when no member has
    /// it (60121) or it is an external contact's (`contact_type` 1), and for
    /// an empty unionid (not sent).
    pub async fn userid_by_unionid(&self, unionid: &str) -> Result<Option<String>, Error> {
        if unionid.is_empty() {
            return Ok(None);
        }
        let body = UnionIdRequest {
            unionid: unionid.to_owned(),
        };
        let req = Request::new(Api::UserByUnionId, Method::POST).json(&body)?;
        match self.call::<UnionIdResult>(req).await {
            Ok(result) => Ok(result.member()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
