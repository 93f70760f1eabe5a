//! The EIP-4361 message, parsed line by line exactly as the grammar lays it out: anything else
//! (extra lines, fields out of order, a lower-case or mis-checksummed address) is refused, so
//! what the wallet showed the user is what the server checked.

use chrono::{DateTime, Utc};
use sha3::{Digest, Keccak256};

use super::SiweError;

const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

/// A 20-byte Ethereum address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// Only the EIP-55 mixed-case form, as EIP-4361 requires.
    pub fn parse_checksummed(text: &str) -> Option<Self> {
        let digits = text.strip_prefix("0x")?;
        if digits.len() != 40 {
            return None;
        }
        let bytes: [u8; 20] = hex::decode(digits).ok()?.try_into().ok()?;
        let address = Self(bytes);
        (address.checksummed() == text).then_some(address)
    }

    /// An address as a caller may spell it: EIP-55 mixed case (the checksum must hold), or all one
    /// case (no checksum to check).
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix("0x")?;
        let one_case = !digits.bytes().any(|b| b.is_ascii_lowercase())
            || !digits.bytes().any(|b| b.is_ascii_uppercase());
        if !one_case {
            return Self::parse_checksummed(text);
        }
        let bytes: [u8; 20] = hex::decode(digits).ok()?.try_into().ok()?;
        Some(Self(bytes))
    }

    /// EIP-55: a hex letter is upper case where the nibble of keccak256(lower-case hex) is ≥ 8.
    pub fn checksummed(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            out.push(if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }

    /// Lower-case hex, the form stored and compared.
    pub fn lower(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiweMessage {
    pub domain: String,
    pub address: Address,
    pub statement: Option<String>,
    pub uri: String,
    pub chain_id: u64,
    pub nonce: String,
    pub issued_at: DateTime<Utc>,
    pub expiration_time: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub request_id: Option<String>,
    pub resources: Vec<String>,
}

impl SiweMessage {
    pub fn parse(text: &str) -> Result<Self, SiweError> {
        let mut lines = text.split('\n').peekable();
        let first = lines.next().ok_or(SiweError::Malformed("empty"))?;
        let domain = first
            .strip_suffix(PREAMBLE)
            .filter(|d| !d.is_empty() && !d.contains(char::is_whitespace))
            .ok_or(SiweError::Malformed("preamble"))?
            .to_owned();
        let address = lines
            .next()
            .and_then(Address::parse_checksummed)
            .ok_or(SiweError::Malformed("address (EIP-55 checksummed)"))?;
        expect_blank(lines.next())?;
        // `[ statement LF ] LF`: either a blank line, or a statement then a blank line.
        let statement = match lines.next() {
            Some("") => None,
            Some(statement) if !statement.contains('\n') => {
                expect_blank(lines.next())?;
                Some(statement.to_owned())
            }
            _ => return Err(SiweError::Malformed("statement")),
        };
        let uri = field(lines.next(), "URI: ")?.to_owned();
        if field(lines.next(), "Version: ")? != "1" {
            return Err(SiweError::Malformed("version"));
        }
        let chain_id = field(lines.next(), "Chain ID: ")?
            .parse()
            .map_err(|_| SiweError::Malformed("chain id"))?;
        let nonce = field(lines.next(), "Nonce: ")?;
        if nonce.len() < 8 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SiweError::Malformed("nonce"));
        }
        let nonce = nonce.to_owned();
        let issued_at = time(field(lines.next(), "Issued At: ")?)?;
        let expiration_time = optional(&mut lines, "Expiration Time: ")
            .map(time)
            .transpose()?;
        let not_before = optional(&mut lines, "Not Before: ").map(time).transpose()?;
        let request_id = optional(&mut lines, "Request ID: ").map(str::to_owned);
        let mut resources = Vec::new();
        if lines.next_if_eq(&"Resources:").is_some() {
            while let Some(resource) = lines.next_if(|l| l.starts_with("- ")) {
                resources.push(resource[2..].to_owned());
            }
        }
        if lines.next().is_some() {
            return Err(SiweError::Malformed("trailing lines"));
        }
        Ok(Self {
            domain,
            address,
            statement,
            uri,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        })
    }
}

fn expect_blank(line: Option<&str>) -> Result<(), SiweError> {
    (line == Some(""))
        .then_some(())
        .ok_or(SiweError::Malformed("blank line"))
}

fn field<'a>(line: Option<&'a str>, tag: &'static str) -> Result<&'a str, SiweError> {
    line.and_then(|l| l.strip_prefix(tag))
        .filter(|v| !v.is_empty())
        .ok_or(SiweError::Malformed(tag))
}

fn optional<'a>(
    lines: &mut std::iter::Peekable<std::str::Split<'a, char>>,
    tag: &str,
) -> Option<&'a str> {
    lines
        .next_if(|l| l.starts_with(tag))
        .map(|l| &l[tag.len()..])
}

fn time(text: &str) -> Result<DateTime<Utc>, SiweError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SiweError::Malformed("timestamp (RFC 3339)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_examples_round_trip_and_wrong_case_is_refused() {
        // From EIP-55's test vectors.
        for good in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        ] {
            let address = Address::parse_checksummed(good).expect("checksummed");
            assert_eq!(address.checksummed(), good);
        }
        assert!(Address::parse_checksummed("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_none());
    }

    #[test]
    fn the_spec_example_parses_and_variants_are_refused() {
        let text = "service.org wants you to sign in with your Ethereum account:\n0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n\nI accept the ServiceOrg Terms of Service: https://service.org/tos\n\nURI: https://service.org/login\nVersion: 1\nChain ID: 1\nNonce: 32891756\nIssued At: 2021-09-30T16:25:24Z\nResources:\n- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n- https://example.com/my-web2-claim.json";
        let message = SiweMessage::parse(text).expect("the EIP's example");
        assert_eq!(message.domain, "service.org");
        assert_eq!(message.chain_id, 1);
        assert_eq!(message.nonce, "32891756");
        assert_eq!(message.resources.len(), 2);
        assert!(SiweMessage::parse(&text.replace("Version: 1", "Version: 2")).is_err());
        assert!(SiweMessage::parse(&format!("{text}\nextra")).is_err());
        let no_statement = text.replace(
            "I accept the ServiceOrg Terms of Service: https://service.org/tos\n\n",
            "\n",
        );
        assert_eq!(
            SiweMessage::parse(&no_statement)
                .expect("no statement")
                .statement,
            None
        );
    }
}
