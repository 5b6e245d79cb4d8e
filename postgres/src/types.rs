//! How our values travel as PostgreSQL column types (binary protocol).
//!
//! - [`PgTime`]: a [`Timestamp`] as `timestamptz`, exact to the microsecond.
//!   PostgreSQL's binary `timestamptz` is microseconds since 2000-01-01 UTC, so
//!   the conversion is one subtraction; PostgreSQL accepts 4713 BC to 294276
//!   AD, which holds every time from
//!   [`MIN_STORABLE_TIME`](tokenstore_core::MIN_STORABLE_TIME) (4713-11-24 BC)
//!   up to [`Timestamp::MAX`]. Records with an earlier time are refused in
//!   core before they reach here. Its `±infinity` reads back as a corrupt
//!   value.
//! - [`Json`] / [`JsonText`]: JSON text as a `json` column. `json` keeps the
//!   text exactly (`jsonb` would rewrite numbers such as `1e18` or `-0.0`, and
//!   refuses `\u0000`), and PostgreSQL still checks that it is JSON.

use bytes::{BufMut, BytesMut};
use std::error::Error;
use tokenstore_core::Timestamp;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 UTC.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A [`Timestamp`] as `timestamptz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PgTime(pub(crate) Timestamp);

/// `PgTime` of an optional time.
pub(crate) fn opt_time(t: Option<Timestamp>) -> Option<PgTime> {
    t.map(PgTime)
}

impl ToSql for PgTime {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let micros = self
            .0
            .as_unix_micros()
            .checked_sub(PG_EPOCH_MICROS)
            .ok_or("a time earlier than PostgreSQL's timestamptz can hold")?;
        out.put_i64(micros);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| "timestamptz is 8 bytes")?;
        let pg = i64::from_be_bytes(bytes);
        if pg == i64::MAX || pg == i64::MIN {
            return Err("an infinite timestamptz".into());
        }
        let micros = pg
            .checked_add(PG_EPOCH_MICROS)
            .ok_or("a timestamptz beyond the Unix microsecond range")?;
        Ok(Self(Timestamp::from_unix_micros(micros)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// JSON text to write to a `json` column.
#[derive(Debug)]
pub(crate) struct Json<'a>(pub(crate) &'a str);

impl ToSql for Json<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

/// Owned JSON text (for arrays of `json` in set-based statements).
#[derive(Debug, Clone)]
pub(crate) struct JsonOwned(pub(crate) String);

impl ToSql for JsonOwned {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        Json(&self.0).to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

/// JSON text read from a `json` column.
#[derive(Debug)]
pub(crate) struct JsonText(pub(crate) String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: Timestamp) -> Option<Timestamp> {
        let mut buf = BytesMut::new();
        PgTime(t).to_sql(&Type::TIMESTAMPTZ, &mut buf).ok()?;
        PgTime::from_sql(&Type::TIMESTAMPTZ, &buf).ok().map(|p| p.0)
    }

    #[test]
    fn times_round_trip_exactly() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, PG_EPOCH_MICROS, i64::MAX] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(round_trip(t), Some(t), "{micros}");
        }
        assert_eq!(round_trip(Timestamp::MIN), None);
    }

    #[test]
    fn the_pg_epoch_is_zero_on_the_wire() {
        let mut buf = BytesMut::new();
        PgTime(Timestamp::from_unix_secs(946_684_800))
            .to_sql(&Type::TIMESTAMPTZ, &mut buf)
            .expect("encoded");
        assert_eq!(&buf[..], &[0u8; 8]);
    }

    #[test]
    fn infinity_is_refused() {
        for raw in [i64::MAX, i64::MIN] {
            let bytes = raw.to_be_bytes();
            assert!(PgTime::from_sql(&Type::TIMESTAMPTZ, &bytes).is_err());
        }
    }
}
