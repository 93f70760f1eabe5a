//! The domain of ledgerhook: one `TradingAccount` aggregate per user, its commands, its events and
//! its risk rules.
//!
//! Architecture invariant: this crate knows nothing about HTTP, SQL, the clock or randomness. Every
//! time and identifier it needs arrives inside a command, so replaying the same events always
//! reproduces the same state.

mod account;
mod commands;
mod emergency;
mod events;
mod execution;
mod fills;
mod in_flight;
mod keys;
mod notices;
mod position;
mod quota;
mod reconcile;
mod risk;
mod service_credentials;
mod settings;
mod signal;
mod upcasting;
mod values;

pub use account::{
    AccountError, CompensationOrder, DailyVolume, Halt, InFlight, Profile, RestingOrder, SeenKey,
    SignalStage, TradingAccount, FINGERPRINT_KEY_PREFIX, FINGERPRINT_WINDOW_SECONDS,
    IDEMPOTENCY_WINDOW_HOURS, NOTIFICATION_ATTEMPTS, STATE_VERSION,
};
pub use commands::{
    AccountCommand, CompensationReport, CredentialAccess, ExecutionReport, Fill,
    NotificationOutcome, OrderType, SignalIntent, TradeInstruction,
};
pub use emergency::{
    EmergencyCommand, EmergencyError, EmergencyEvent, EmergencyStop, EMERGENCY_STOP_ID,
};
pub use events::{AccountEvent, RejectionReason, EVENT_VERSION};
pub use execution::AUTOMATIC_HALT_BY;
pub use fills::{MAX_FILL_NOTIONAL_USD, MAX_FILL_PRICE};
pub use in_flight::InFlightSignals;
pub use keys::{KeyMemory, RememberedKey};
pub use notices::is_notice;
pub use position::{Position, Unrepresentable};
pub use quota::SignalQuota;
pub use reconcile::Drift;
pub use risk::{rule, RiskCheck, RiskLimits};
pub use service_credentials::{
    ServiceCredentials, ServiceCredentialsCommand, ServiceCredentialsError,
    ServiceCredentialsEvent, SERVICE_CREDENTIALS_EVENT_VERSION, SERVICE_OWNER_ID,
};
pub use settings::{AccountSettings, SettingsChange, Venue};
pub use upcasting::upcasters;
pub use values::{ClientOrderId, Market, ParseError, Quantity, Side, SignalId, UsdAmount};
