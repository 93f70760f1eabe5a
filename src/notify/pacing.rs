//! Outbound pacing for one bot: Telegram allows about 30 messages a second per bot and one a
//! second per chat, and answers more with 429. Token buckets (governor's GCRA) make a burst wait
//! its turn here instead.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

/// Chats remembered before the idle ones are dropped: the keyed store has no cap of its own.
const MAX_TRACKED_CHATS: usize = 10_000;

pub struct Pacing {
    bot: DefaultDirectRateLimiter,
    /// Keyed by a digest of the chat id, so no chat id sits in this table in clear.
    chats: DefaultKeyedRateLimiter<[u8; 16]>,
}

impl Pacing {
    pub fn new(per_bot: NonZeroU32, per_chat: NonZeroU32) -> Self {
        Self {
            bot: RateLimiter::direct(Quota::per_second(per_bot)),
            chats: RateLimiter::keyed(Quota::per_second(per_chat)),
        }
    }

    /// Waits until both the chat and the bot may send one more message.
    pub async fn ready(&self, chat_id: &str) {
        if self.chats.len() >= MAX_TRACKED_CHATS {
            // Chats whose bucket is full again carry no state worth keeping.
            self.chats.retain_recent();
            self.chats.shrink_to_fit();
        }
        let digest = Sha256::digest(chat_id.as_bytes());
        let mut key = [0_u8; 16];
        key.copy_from_slice(&digest[..16]);
        self.chats.until_key_ready(&key).await;
        self.bot.until_ready().await;
    }
}
