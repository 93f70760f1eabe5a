//! The service-wide credentials' access record (the Telegram bot token belongs to no user): one
//! stream of its own, like the emergency stop, so that every decryption of a service-wide value is
//! in the ledger as a user's are in their account's stream.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::CredentialAccess;

/// The owner id of service-wide vault values, and the id of their access stream.
pub const SERVICE_OWNER_ID: &str = "service";
pub const SERVICE_CREDENTIALS_EVENT_VERSION: &str = "1.0";

/// Nothing to remember: every access is recorded, whatever came before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceCredentials;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServiceCredentialsCommand {
    RecordCredentialAccess(CredentialAccess),
}

/// The same shape as `AccountEvent::CredentialAccessed`, so one query reads both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServiceCredentialsEvent {
    CredentialAccessed {
        field: String,
        purpose: String,
        by: String,
        key_version: u32,
        at: chrono::DateTime<chrono::Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceCredentialsError {
    #[error("who and why are required")]
    Unattributed,
}

impl ServiceCredentials {
    pub fn decide(
        &self,
        command: ServiceCredentialsCommand,
    ) -> Result<Vec<ServiceCredentialsEvent>, ServiceCredentialsError> {
        let ServiceCredentialsCommand::RecordCredentialAccess(access) = command;
        if access.by.trim().is_empty() || access.purpose.trim().is_empty() {
            return Err(ServiceCredentialsError::Unattributed);
        }
        Ok(vec![ServiceCredentialsEvent::CredentialAccessed {
            field: access.field,
            purpose: access.purpose,
            by: access.by,
            key_version: access.key_version,
            at: access.at,
        }])
    }
}

impl Aggregate for ServiceCredentials {
    const TYPE: &'static str = "ServiceCredentials";
    type Command = ServiceCredentialsCommand;
    type Event = ServiceCredentialsEvent;
    type Error = ServiceCredentialsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _event: Self::Event) {}
}

impl DomainEvent for ServiceCredentialsEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CredentialAccessed { .. } => "CredentialAccessed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        SERVICE_CREDENTIALS_EVENT_VERSION.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountEvent;
    use chrono::{DateTime, Utc};
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn access(by: &str, purpose: &str) -> CredentialAccess {
        CredentialAccess {
            field: "telegram_bot_token".into(),
            purpose: purpose.into(),
            by: by.into(),
            key_version: 3,
            at: at(),
        }
    }

    fn recorded(access: &CredentialAccess) -> ServiceCredentialsEvent {
        ServiceCredentialsEvent::CredentialAccessed {
            field: access.field.clone(),
            purpose: access.purpose.clone(),
            by: access.by.clone(),
            key_version: access.key_version,
            at: access.at,
        }
    }

    #[tokio::test]
    async fn every_access_is_recorded_with_what_why_who_and_key_version_even_a_repeated_one() {
        let access = access("notifier", "send a fill notice");
        TestFramework::<ServiceCredentials>::with(())
            .given(vec![recorded(&access)])
            .when_async(ServiceCredentialsCommand::RecordCredentialAccess(
                access.clone(),
            ))
            .await
            .then_expect_events(vec![recorded(&access)]);
    }

    #[tokio::test]
    async fn an_access_without_who_or_why_is_refused() {
        for (by, purpose) in [(" ", "send a fill notice"), ("notifier", "")] {
            TestFramework::<ServiceCredentials>::with(())
                .given_no_previous_events()
                .when_async(ServiceCredentialsCommand::RecordCredentialAccess(access(
                    by, purpose,
                )))
                .await
                .then_expect_error(ServiceCredentialsError::Unattributed);
        }
    }

    /// Compliance reads the service's accesses and the accounts' with one query: the stored
    /// event has the account event's name and payload.
    #[test]
    fn a_service_access_is_stored_as_an_account_access_is() {
        let access = access("notifier", "send a fill notice");
        let service = recorded(&access);
        let account = access.clone().into_event();
        assert_eq!(service.event_type(), account.event_type());
        assert_eq!(
            serde_json::to_value(&service).ok(),
            serde_json::to_value(&account).ok()
        );
        assert_eq!(service.event_version(), "1.0");
        assert!(matches!(account, AccountEvent::CredentialAccessed { .. }));
    }
}
