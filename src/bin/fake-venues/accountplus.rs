//! The fake chain's signature checks and x/accountplus: the authenticators owners registered
//! (through the control endpoint here, as `MsgAddAuthenticator` would on the chain), and the ante
//! handler's decision on a transaction — before any of its messages is looked at, as CheckTx.
//!
//! - No `TxExtension`: the signer's public key must be the message owner's (its address) and
//!   sign the transaction under the owner's account number.
//! - With one: each message names an authenticator id that must exist for its owner; that
//!   authenticator's public key must verify the signature, its message filter allow the message's
//!   type, and its subaccount and market (clob pair) filters, when set, the order's.
//!
//! Refusals carry the chain's codespaces and codes: `sdk` 4 (unauthorized), `sdk` 8 (invalid
//! pubkey), `accountplus` 1 (authenticator not found); logs as the chain words them, closely.

use std::collections::HashMap;
use std::sync::Mutex;

use dydx_proto::cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey;
use dydx_proto::cosmos_sdk_proto::cosmos::tx::v1beta1::{AuthInfo, SignDoc, TxBody, TxRaw};
use dydx_proto::cosmos_sdk_proto::prost::Message;
use dydx_proto::dydxprotocol::accountplus::TxExtension;
use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const SECP256K1_PUBKEY: &str = "/cosmos.crypto.secp256k1.PubKey";
const TX_EXTENSION: &str = "/dydxprotocol.accountplus.TxExtension";

/// What one authenticator allows: `AllOf[SignatureVerification, MessageFilter,
/// SubaccountFilter?, ClobPairIdFilter?]`, the shape dYdX's permissioned keys use.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticatorSpec {
    /// The `dydx1...` account the authenticator belongs to.
    pub owner: String,
    /// The trading key's compressed secp256k1 public key, hex.
    pub public_key: String,
    /// Message type URLs allowed, e.g. `/dydxprotocol.clob.MsgPlaceOrder`.
    pub message_filter: Vec<String>,
    /// Subaccount numbers allowed; any when absent.
    #[serde(default)]
    pub subaccount_filter: Option<Vec<u32>>,
    /// Clob pair ids (markets) allowed; any when absent.
    #[serde(default)]
    pub clob_pair_filter: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub id: u64,
    #[serde(flatten)]
    pub spec: AuthenticatorSpec,
    #[serde(skip)]
    key: VerifyingKey,
}

/// The owners' authenticators; ids are chain-wide and never reused, as on the chain.
#[derive(Default)]
pub struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    next_id: u64,
    by_owner: HashMap<String, Vec<Registered>>,
}

impl Registry {
    fn state(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an authenticator and returns its id; a malformed one is refused, as
    /// `MsgAddAuthenticator` refuses it.
    pub fn add(&self, spec: AuthenticatorSpec) -> Result<u64, String> {
        if spec.owner.parse::<cosmrs::AccountId>().is_err() || !spec.owner.starts_with("dydx1") {
            return Err("owner must be a dydx1... address".to_owned());
        }
        let bytes =
            hex::decode(spec.public_key.trim()).map_err(|_| "public_key must be hex".to_owned())?;
        let key = VerifyingKey::from_sec1_bytes(&bytes)
            .map_err(|_| "public_key is not a secp256k1 public key".to_owned())?;
        if spec.message_filter.is_empty() {
            return Err("message_filter must allow at least one message type".to_owned());
        }
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state
            .by_owner
            .entry(spec.owner.clone())
            .or_default()
            .push(Registered { id, spec, key });
        Ok(id)
    }

    /// Removes `owner`'s authenticator `id`; false when it has none such.
    pub fn remove(&self, owner: &str, id: u64) -> bool {
        let mut state = self.state();
        let Some(list) = state.by_owner.get_mut(owner) else {
            return false;
        };
        let before = list.len();
        list.retain(|registered| registered.id != id);
        before != list.len()
    }

    pub fn of(&self, owner: &str) -> Vec<Registered> {
        self.state()
            .by_owner
            .get(owner)
            .cloned()
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Registered> {
        let mut all: Vec<Registered> = self.state().by_owner.values().flatten().cloned().collect();
        all.sort_by_key(|registered| registered.id);
        all
    }

    fn find(&self, owner: &str, id: u64) -> Option<Registered> {
        self.state()
            .by_owner
            .get(owner)
            .and_then(|list| list.iter().find(|registered| registered.id == id))
            .cloned()
    }
}

/// What the ante handler needs of one message: its type and whose order it touches.
pub struct MessageScope {
    pub type_url: String,
    pub owner: String,
    pub subaccount: u32,
    pub clob_pair_id: u32,
}

/// A CheckTx refusal.
#[derive(Debug)]
pub struct Refusal {
    pub codespace: &'static str,
    pub code: u32,
    pub log: String,
}

fn unauthorized(log: String) -> Refusal {
    Refusal {
        codespace: "sdk",
        code: 4,
        log: format!("{log}: unauthorized"),
    }
}

/// A decoded transaction, as much as the checks need.
pub struct SignedTx {
    pub body: TxBody,
    raw: TxRaw,
    /// The signer's public key and address.
    signer: Option<(VerifyingKey, String)>,
}

impl SignedTx {
    pub fn decode(tx_bytes: &[u8]) -> Result<Self, String> {
        let raw = TxRaw::decode(tx_bytes).map_err(|error| error.to_string())?;
        let body = TxBody::decode(raw.body_bytes.as_slice()).map_err(|error| error.to_string())?;
        let auth_info =
            AuthInfo::decode(raw.auth_info_bytes.as_slice()).map_err(|error| error.to_string())?;
        let signer = auth_info
            .signer_infos
            .first()
            .and_then(|info| info.public_key.as_ref())
            .filter(|any| any.type_url == SECP256K1_PUBKEY)
            .and_then(|any| PubKey::decode(any.value.as_slice()).ok())
            .and_then(|key| VerifyingKey::from_sec1_bytes(&key.key).ok())
            .and_then(|key| {
                let address = cosmrs::crypto::PublicKey::from(key)
                    .account_id("dydx")
                    .ok()?
                    .to_string();
                Some((key, address))
            });
        Ok(Self { body, raw, signer })
    }

    /// The signer's address, for what the control endpoint shows.
    pub fn signer_address(&self) -> Option<String> {
        self.signer.as_ref().map(|(_, address)| address.clone())
    }

    /// The authenticator ids the transaction selects, when it carries the extension.
    pub fn selected_authenticators(&self) -> Option<Vec<u64>> {
        self.body
            .non_critical_extension_options
            .iter()
            .find(|any| any.type_url == TX_EXTENSION)
            .and_then(|any| TxExtension::decode(any.value.as_slice()).ok())
            .map(|extension| extension.selected_authenticators)
    }

    fn verifies(&self, key: &VerifyingKey, chain_id: &str, account_number: u64) -> bool {
        let doc = SignDoc {
            body_bytes: self.raw.body_bytes.clone(),
            auth_info_bytes: self.raw.auth_info_bytes.clone(),
            chain_id: chain_id.to_owned(),
            account_number,
        }
        .encode_to_vec();
        let [signature] = self.raw.signatures.as_slice() else {
            return false;
        };
        Signature::from_slice(signature).is_ok_and(|signature| key.verify(&doc, &signature).is_ok())
    }
}

/// The account number the fake's auth module gives `address`: stable, derived from it.
pub fn account_number(address: &str) -> u64 {
    let digest = Sha256::digest(address.as_bytes());
    u64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]))
}

/// The ante handler: whether `tx` may carry `messages` for their owners.
pub fn authenticate(
    registry: &Registry,
    chain_id: &str,
    tx: &SignedTx,
    messages: &[MessageScope],
) -> Result<(), Refusal> {
    let Some((own_key, signer)) = &tx.signer else {
        return Err(unauthorized(
            "no secp256k1 signer public key in the transaction".to_owned(),
        ));
    };
    let Some(selected) = tx.selected_authenticators() else {
        for message in messages {
            if &message.owner != signer {
                return Err(Refusal {
                    codespace: "sdk",
                    code: 8,
                    log: format!(
                        "pubKey does not match signer address {} with signer index: 0: invalid \
                         pubkey",
                        message.owner
                    ),
                });
            }
            let number = account_number(&message.owner);
            if !tx.verifies(own_key, chain_id, number) {
                return Err(unauthorized(format!(
                    "signature verification failed; please verify account number ({number}) and \
                     chain-id ({chain_id})"
                )));
            }
        }
        return Ok(());
    };
    if selected.len() != messages.len() {
        return Err(unauthorized(format!(
            "mismatch between the number of selected authenticators ({}) and messages ({})",
            selected.len(),
            messages.len()
        )));
    }
    for (index, (message, id)) in messages.iter().zip(selected).enumerate() {
        let Some(authenticator) = registry.find(&message.owner, id) else {
            return Err(Refusal {
                codespace: "accountplus",
                code: 1,
                log: format!(
                    "selected authenticator ({}, {id}) not found: Authenticator is not found",
                    message.owner
                ),
            });
        };
        let failed = |why: String| {
            unauthorized(format!(
                "authentication failed for message {index}, authenticator id {id}, type AllOf: \
                 {why}"
            ))
        };
        if !tx.verifies(&authenticator.key, chain_id, account_number(&message.owner)) {
            return Err(failed("signature verification failed".to_owned()));
        }
        let spec = &authenticator.spec;
        if !spec.message_filter.contains(&message.type_url) {
            return Err(failed(format!(
                "message types do not match. Got {}, Expected {:?}",
                message.type_url, spec.message_filter
            )));
        }
        if let Some(allowed) = &spec.subaccount_filter {
            if !allowed.contains(&message.subaccount) {
                return Err(failed(format!(
                    "order subaccount number {} not in allowed list {allowed:?}",
                    message.subaccount
                )));
            }
        }
        if let Some(allowed) = &spec.clob_pair_filter {
            if !allowed.contains(&message.clob_pair_id) {
                return Err(failed(format!(
                    "order clob pair id {} not in whitelist {allowed:?}",
                    message.clob_pair_id
                )));
            }
        }
    }
    Ok(())
}

/// The authenticator as `GetAuthenticators` returns it: type `AllOf`, config the JSON list of its
/// parts (`{"type", "config"}`, config in base64), as the chain stores it.
pub fn as_chain_config(registered: &Registered) -> Vec<u8> {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let part =
        |kind: &str, config: &[u8]| serde_json::json!({ "type": kind, "config": encode(config) });
    let spec = &registered.spec;
    let mut parts = vec![
        part("SignatureVerification", &registered.key.to_sec1_bytes()),
        part("MessageFilter", spec.message_filter.join(",").as_bytes()),
    ];
    let list = |numbers: &[u32]| {
        numbers
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(allowed) = &spec.subaccount_filter {
        parts.push(part("SubaccountFilter", list(allowed).as_bytes()));
    }
    if let Some(allowed) = &spec.clob_pair_filter {
        parts.push(part("ClobPairIdFilter", list(allowed).as_bytes()));
    }
    serde_json::to_vec(&parts).unwrap_or_default()
}
