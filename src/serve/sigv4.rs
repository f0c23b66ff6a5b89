//! Checking a request's AWS Signature Version 4 against the configured credentials.
//!
//! The signature is recomputed with the `aws-sigv4` crate over exactly the headers the
//! client says it signed, at the time it says it signed (`X-Amz-Date`, which must be within
//! five minutes of now), for the credential scope it names (which must be this server's
//! region and the service the target belongs to). Secrets are never logged or returned.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::Credential;
use super::api::{ApiError, same_bytes};

/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// Why a request was refused, as AWS says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("MissingAuthenticationTokenException: Missing Authentication Token")]
    Missing,
    #[error("IncompleteSignatureException: {0}")]
    Incomplete(String),
    #[error("UnrecognizedClientException: The security token included in the request is invalid.")]
    UnknownKey,
    #[error("InvalidSignatureException: {0}")]
    BadSignature(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let (code, message) = match &e {
            AuthError::Missing => ("MissingAuthenticationTokenException", "Missing Authentication Token".to_string()),
            AuthError::Incomplete(m) => ("IncompleteSignatureException", m.clone()),
            AuthError::UnknownKey => ("UnrecognizedClientException", "The security token included in the request is invalid.".to_string()),
            AuthError::BadSignature(m) => ("InvalidSignatureException", m.clone()),
        };
        ApiError { code, message, status: if matches!(e, AuthError::Missing) { 403 } else { 400 } }
    }
}

/// The request as the signature covers it.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path and query exactly as received.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// The parsed `Authorization` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(v: &str) -> Result<Authorization<'_>, AuthError> {
    let incomplete = |what: &str| AuthError::Incomplete(format!("Authorization header requires '{what}' parameter."));
    let rest = v
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| AuthError::Incomplete("Only the AWS4-HMAC-SHA256 signature algorithm is supported.".into()))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(c) = part.strip_prefix("Credential=") {
            credential = Some(c);
        } else if let Some(s) = part.strip_prefix("SignedHeaders=") {
            signed = Some(s);
        } else if let Some(s) = part.strip_prefix("Signature=") {
            signature = Some(s);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    if terminator != "aws4_request" {
        return Err(AuthError::BadSignature("Credential should be scoped with a valid terminator: 'aws4_request'.".into()));
    }
    Ok(Authorization { access_key_id, date, region, service, signed_headers: signed.split(';').collect(), signature })
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?.and_utc();
    let secs = u64::try_from(t.timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Verify the request's signature. Returns the access key id that signed it.
pub fn verify(req: &Signed<'_>, creds: &[Credential], region: &str, service: &str, now: SystemTime) -> Result<String, AuthError> {
    let auth = req.headers.get(http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let auth = auth.to_str().map_err(|_| AuthError::Incomplete("The Authorization header is not ASCII.".into()))?;
    let a = parse_authorization(auth)?;
    let cred = creds.iter().find(|c| c.access_key_id == a.access_key_id).ok_or(AuthError::UnknownKey)?;
    // This server issues no temporary credentials: a session token is for some other key.
    if req.headers.contains_key("x-amz-security-token") {
        return Err(AuthError::UnknownKey);
    }
    let amz_date = req.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        AuthError::Incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into())
    })?;
    let when = parse_amz_date(amz_date)
        .ok_or_else(|| AuthError::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")))?;
    let skew = now.duration_since(when).or_else(|_| when.duration_since(now)).unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(AuthError::BadSignature(format!(
            "Signature expired: {amz_date} is now earlier or later than the server's time by more than {} minutes.",
            MAX_SKEW.as_secs() / 60
        )));
    }
    if !amz_date.starts_with(a.date) || a.date.len() != 8 {
        return Err(AuthError::BadSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            a.date,
            amz_date.get(..8).unwrap_or(amz_date)
        )));
    }
    if a.region != region {
        return Err(AuthError::BadSignature(format!("Credential should be scoped to a valid region, not '{}'. ", a.region)));
    }
    if a.service != service {
        return Err(AuthError::BadSignature(format!("Credential should be scoped to correct service: '{service}'. ")));
    }
    // The target names the operation: unsigned, a captured read could be replayed as a
    // write (a DescribeExecution body is a valid StopExecution body).
    for must in ["host", "x-amz-date", "x-amz-target"] {
        if !a.signed_headers.contains(&must) {
            return Err(AuthError::BadSignature(format!("'{must}' must be a signed header.")));
        }
    }
    for present in ["x-amz-security-token", "x-amz-content-sha256"] {
        if req.headers.contains_key(present) && !a.signed_headers.contains(&present) {
            return Err(AuthError::BadSignature(format!("'{present}' is present, so it must be a signed header.")));
        }
    }
    // Exactly the headers the client signed (x-amz-date is added by the signer from `time`).
    let mut headers: Vec<(&str, &str)> = vec![];
    for name in a.signed_headers.iter().filter(|n| **n != "x-amz-date") {
        for v in req.headers.get_all(*name) {
            let v = v.to_str().map_err(|_| AuthError::BadSignature(format!("The signed header {name} is not ASCII.")))?;
            headers.push((name, v));
        }
    }
    let uri = format!("http://signed.invalid{}", req.path_and_query);
    let signable = SignableRequest::new(req.method, uri, headers.into_iter(), SignableBody::Bytes(req.body))
        .map_err(|e| AuthError::BadSignature(format!("The request cannot be checked: {e}")))?;
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    let identity: Identity =
        aws_credential_types::Credentials::new(cred.access_key_id.clone(), cred.secret_access_key.clone(), None, None, "lightbox-serve")
            .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(a.region)
        .name(a.service)
        .time(when)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::BadSignature(format!("The request cannot be checked: {e}")))?;
    let (_, want) =
        sign(signable, &params.into()).map_err(|e| AuthError::BadSignature(format!("The request cannot be checked: {e}")))?.into_parts();
    if !same_bytes(want.as_bytes(), a.signature.as_bytes()) {
        return Err(AuthError::BadSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        ));
    }
    Ok(cred.access_key_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred() -> Vec<Credential> {
        vec![Credential { access_key_id: "AKIDTEST".into(), secret_access_key: "s3cret-key".into() }]
    }

    /// Sign a request the way an SDK does, with aws-sigv4 itself.
    fn signed(secret: &str, body: &[u8], at: SystemTime, region: &str) -> http::HeaderMap {
        signed_with(secret, body, at, region, None, true)
    }

    /// `session`: a session token to sign with; `sign_target`: whether x-amz-target is signed
    /// (it is sent either way).
    fn signed_with(secret: &str, body: &[u8], at: SystemTime, region: &str, session: Option<&str>, sign_target: bool) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("host", "127.0.0.1:8083".parse().unwrap());
        h.insert("content-type", "application/x-amz-json-1.0".parse().unwrap());
        if sign_target {
            h.insert("x-amz-target", "AWSStepFunctions.ListStateMachines".parse().unwrap());
        }
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
        let req = SignableRequest::new("POST", "http://127.0.0.1:8083/", pairs.into_iter(), SignableBody::Bytes(body)).unwrap();
        let identity: Identity = aws_credential_types::Credentials::new("AKIDTEST", secret, session.map(str::to_string), None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("states")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap();
        let (instr, _) = sign(req, &params.into()).unwrap().into_parts();
        for (k, v) in instr.headers() {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        if !sign_target {
            h.insert("x-amz-target", "AWSStepFunctions.StopExecution".parse().unwrap());
        }
        h
    }

    fn check(h: &http::HeaderMap, body: &[u8], now: SystemTime) -> Result<String, AuthError> {
        verify(&Signed { method: "POST", path_and_query: "/", headers: h, body }, &cred(), "us-east-1", "states", now)
    }

    #[test]
    fn a_good_signature_passes_and_names_its_key() {
        let now = SystemTime::now();
        let h = signed("s3cret-key", b"{}", now, "us-east-1");
        assert_eq!(check(&h, b"{}", now), Ok("AKIDTEST".into()));
    }

    #[test]
    fn a_changed_body_a_wrong_secret_a_wrong_region_or_an_old_date_fail() {
        let now = SystemTime::now();
        let h = signed("s3cret-key", b"{}", now, "us-east-1");
        assert!(matches!(check(&h, b"{\"a\":1}", now), Err(AuthError::BadSignature(_))));
        let h = signed("wrong", b"{}", now, "us-east-1");
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(m)) if m.contains("does not match")));
        let h = signed("s3cret-key", b"{}", now, "eu-west-1");
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(m)) if m.contains("region")));
        let old = now - Duration::from_secs(600);
        let h = signed("s3cret-key", b"{}", old, "us-east-1");
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(m)) if m.contains("expired")));
    }

    #[test]
    fn an_unknown_key_or_no_signature_is_refused() {
        let now = SystemTime::now();
        let mut h = signed("s3cret-key", b"{}", now, "us-east-1");
        let auth = h.get("authorization").unwrap().to_str().unwrap().replace("AKIDTEST", "AKIDOTHER");
        h.insert("authorization", auth.parse().unwrap());
        assert_eq!(check(&h, b"{}", now), Err(AuthError::UnknownKey));
        h.remove("authorization");
        assert_eq!(check(&h, b"{}", now), Err(AuthError::Missing));
        h.insert("authorization", "AWS4-HMAC-SHA256 Credential=AKIDTEST/x".parse().unwrap());
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn a_header_that_was_signed_cannot_be_changed() {
        let now = SystemTime::now();
        let mut h = signed("s3cret-key", b"{}", now, "us-east-1");
        h.insert("x-amz-target", "AWSStepFunctions.DeleteStateMachine".parse().unwrap());
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(_))));
    }

    #[test]
    fn a_signature_that_does_not_cover_the_target_is_refused() {
        let now = SystemTime::now();
        let h = signed_with("s3cret-key", b"{}", now, "us-east-1", None, false);
        assert!(
            matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(m)) if m.contains("x-amz-target")),
            "a read's signature must not carry a write"
        );
    }

    #[test]
    fn a_session_token_or_an_unsigned_payload_hash_is_refused() {
        let now = SystemTime::now();
        // Correctly signed, session token included: this server has no temporary credentials.
        let h = signed_with("s3cret-key", b"{}", now, "us-east-1", Some("FwoGZXIvYXdzEXAMPLE"), true);
        assert_eq!(check(&h, b"{}", now), Err(AuthError::UnknownKey));
        // A payload-hash header the signature does not cover.
        let mut h = signed("s3cret-key", b"{}", now, "us-east-1");
        h.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(m)) if m.contains("x-amz-content-sha256")));
    }

    #[test]
    fn a_replay_after_fifteen_minutes_and_another_service_are_refused() {
        let now = SystemTime::now();
        let h = signed("s3cret-key", b"{}", now - Duration::from_secs(15 * 60), "us-east-1");
        assert!(matches!(check(&h, b"{}", now), Err(AuthError::BadSignature(m)) if m.contains("expired")));
        let h = signed("s3cret-key", b"{}", now, "us-east-1");
        let r = verify(&Signed { method: "POST", path_and_query: "/", headers: &h, body: b"{}" }, &cred(), "us-east-1", "logs", now);
        assert!(matches!(r, Err(AuthError::BadSignature(m)) if m.contains("service")));
    }
}
