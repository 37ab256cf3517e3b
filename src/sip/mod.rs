//! SIP messages: a zero-copy parser, typed header views parsed on demand,
//! validation, and a writer that splices edits into a caller's buffer
//! (RFC 3261 §7, §20, §25). Everything here is pure: no I/O, no clock, no
//! allocation.

mod error;
mod header;
mod method;
mod name_addr;
mod parse;
mod request;
mod response;
pub mod scan;
mod txkey;
mod uri;
mod validate;
mod values;
mod via;
mod write;

pub use error::ParseError;
pub use header::{HeaderName, HEADER_NAME_COUNT};
pub use method::Method;
pub use name_addr::{parse_qvalue, Contact, NameAddr};
pub use parse::{Header, HeaderValue, Message, StartLine, Values, MAX_HEADERS};
pub use request::{write_ack, write_cancel};
pub use response::{ResponseWriter, ViaEdit};
pub use txkey::transaction_hash;
pub use uri::{eq_unescaped, unescape, Host, SipUri, TelUri, Uri};
pub use validate::{validate, MANDATORY};
pub use values::{is_valid_call_id, CSeq, MediaType};
pub use via::{Rport, Via, BRANCH_COOKIE};
pub use write::{write_u32, Edits, Piece, WriteError, MAX_EDITS};
