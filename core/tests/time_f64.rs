//! `Timestamp::from_unix_secs_f64` against an independent exact reference:
//! the double's full decimal expansion, rounded to the microsecond as text
//! (ties to even), which is what Python's `round(x, 6)` does.
//!
//! `TOKENSTORE_PROPTEST_CASES=<n>` sets the cases of every property (the
//! defaults take a few seconds in debug builds together).

use proptest::prelude::*;
use proptest::test_runner::Config;
use tokenstore_core::Timestamp;

/// Cases per property: `TOKENSTORE_PROPTEST_CASES` if set, else `default`.
fn config(default: u32) -> Config {
    let cases = match std::env::var("TOKENSTORE_PROPTEST_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TOKENSTORE_PROPTEST_CASES must be a number, not {v:?}")),
        Err(_) => default,
    };
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The centre of mxcp's range: 2026-12-01, about when this test was written.
const NOW_SECS: f64 = 1_796_154_906.0;
/// Fifty years either side of `NOW_SECS`.
const LOW_SECS: f64 = NOW_SECS - 50.0 * 365.25 * 86_400.0;
const HIGH_SECS: f64 = NOW_SECS + 50.0 * 365.25 * 86_400.0;

/// Enough decimals for the whole expansion of any finite double (the
/// smallest, 2^-1074, has 1074).
const ALL_DIGITS: usize = 1_074;
/// Enough for doubles of at least 2^27 s (every double in mxcp's range):
/// they are multiples of 2^-25, which have at most 25 decimals.
const MXCP_DIGITS: usize = 25;

/// The microsecond nearest to `x`, ties to even, saturated to `i64`; from
/// `x` printed with `digits` decimals, which must be all of them.
fn reference_micros(x: f64, digits: usize) -> i64 {
    let text = format!("{:.*}", digits, x.abs());
    let (int, frac) = text.split_once('.').expect("a decimal point");
    let (kept, dropped) = frac.split_at(6);
    let mut micros: Vec<u8> = format!("{int}{kept}").into_bytes();
    let rest = dropped.trim_end_matches('0');
    let last_odd = micros.last().is_some_and(|d| (d - b'0') % 2 == 1);
    let up = match rest.as_bytes().first() {
        None => false,
        Some(b'5') if rest.len() == 1 => last_odd,
        Some(&d) => d >= b'5',
    };
    if up {
        increment(&mut micros);
    }
    let magnitude = std::str::from_utf8(&micros).expect("digits");
    let negative = x < 0.0;
    let signed = format!("{}{magnitude}", if negative { "-" } else { "" });
    signed
        .parse::<i64>()
        .unwrap_or(if negative { i64::MIN } else { i64::MAX })
}

/// Adds one to a decimal number written as ASCII digits.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// Whether `x` lies exactly halfway between two microseconds.
fn is_tie(x: f64) -> bool {
    let text = format!("{:.*}", ALL_DIGITS, x.abs());
    let frac = text.split_once('.').expect("a decimal point").1;
    frac[6..].trim_end_matches('0') == "5"
}

/// Doubles in mxcp's range three ways: every representable double equally
/// likely, real values uniformly, and `time.time()`-like values (Python
/// turns integer nanoseconds into a double and divides it by 1e9).
fn mxcp_double() -> impl Strategy<Value = f64> {
    let (low, high) = (LOW_SECS.to_bits(), HIGH_SECS.to_bits());
    let low_ns = LOW_SECS as u64 * 1_000_000_000;
    let high_ns = HIGH_SECS as u64 * 1_000_000_000;
    prop_oneof![
        (low..=high).prop_map(f64::from_bits),
        LOW_SECS..HIGH_SECS,
        (low_ns..high_ns).prop_map(|ns| ns as f64 / 1e9),
    ]
}

/// Any finite double, every bit pattern equally likely.
fn finite_double() -> impl Strategy<Value = f64> {
    any::<u64>()
        .prop_map(f64::from_bits)
        .prop_filter("finite", |x| x.is_finite())
}

/// Exact ties: `x * 10^6 = n + 1/2` means `x = (2n + 1) / (2^7 * 5^6)`,
/// which is a double only when 5^6 divides `2n + 1`, that is `x = odd / 128`.
fn tie_double() -> impl Strategy<Value = f64> {
    (-(1i64 << 40)..(1i64 << 40), 0u8..64)
        .prop_map(|(whole, j)| whole as f64 + f64::from(2 * j + 1) / 128.0)
}

proptest! {
    #![proptest_config(config(100_000))]

    #[test]
    fn mxcp_range_doubles_read_as_their_nearest_microsecond(x in mxcp_double()) {
        prop_assert!(x >= 134_217_728.0, "2^27 s, so MXCP_DIGITS are all the digits");
        let got = Timestamp::from_unix_secs_f64(x).as_unix_micros();
        prop_assert_eq!(got, reference_micros(x, MXCP_DIGITS), "{:?}", x);
    }
}

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn finite_doubles_read_as_their_nearest_microsecond_or_saturate(x in finite_double()) {
        let got = Timestamp::from_unix_secs_f64(x).as_unix_micros();
        prop_assert_eq!(got, reference_micros(x, ALL_DIGITS), "{:?}", x);
    }

    #[test]
    fn ties_go_to_the_even_microsecond(x in tie_double()) {
        prop_assert!(is_tie(x), "{:?} is not a tie", x);
        let got = Timestamp::from_unix_secs_f64(x).as_unix_micros();
        prop_assert_eq!(got % 2, 0, "{:?}", x);
        prop_assert_eq!(got, reference_micros(x, ALL_DIGITS), "{:?}", x);
    }

    #[test]
    fn decoding_is_monotone(a in finite_double(), b in finite_double()) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(Timestamp::from_unix_secs_f64(low) <= Timestamp::from_unix_secs_f64(high));
    }
}

/// Microseconds within 2^33 s of the epoch.
const ROUND_TRIP: i64 = (1 << 33) * 1_000_000;
/// The microseconds `as f64` keeps exactly: below 2^53.
const EXACT_MICROS: i64 = 1 << 53;

proptest! {
    #![proptest_config(config(100_000))]

    #[test]
    fn microseconds_round_trip_within_2_pow_33_s(m in -ROUND_TRIP + 1..ROUND_TRIP) {
        let t = Timestamp::from_unix_micros(m);
        prop_assert_eq!(Timestamp::from_unix_secs_f64(t.as_unix_secs_f64()), t);
    }

    /// Past 2^33 s a double stands for several microseconds; the one read
    /// back still encodes to the same double (it is within 0.5 µs of it,
    /// less than half the double's ulp of at least 2^-19 s).
    #[test]
    fn past_2_pow_33_s_the_double_round_trips(m in ROUND_TRIP..EXACT_MICROS, neg in any::<bool>()) {
        let secs = Timestamp::from_unix_micros(if neg { -m } else { m }).as_unix_secs_f64();
        prop_assert_eq!(Timestamp::from_unix_secs_f64(secs).as_unix_secs_f64(), secs);
    }
}

#[test]
fn the_issue_example_reads_as_python_rounds_it() {
    // Python 3.11: round(1796154906.3457934856, 6) == 1796154906.345793
    // Parsed from the text, as Python does, to keep all the issue's digits.
    let x: f64 = "1796154906.3457934856".parse().expect("a number");
    let t = Timestamp::from_unix_secs_f64(x);
    assert_eq!(t.as_unix_micros(), 1_796_154_906_345_793);
}

#[test]
fn exact_ties_match_python() {
    // Python 3.11: round(0.0078125, 6) == 0.007812, round(0.0234375, 6) ==
    // 0.023438, round(-0.0078125, 6) == -0.007812,
    // round(1796154906.0078125, 6) == 1796154906.007812.
    for (x, micros) in [
        (0.007_812_5, 7_812),
        (0.023_437_5, 23_438),
        (-0.007_812_5, -7_812),
        (1_796_154_906.007_812_5, 1_796_154_906_007_812),
    ] {
        assert_eq!(Timestamp::from_unix_secs_f64(x).as_unix_micros(), micros);
    }
}

#[test]
fn non_finite_and_out_of_range_values_saturate() {
    let from = Timestamp::from_unix_secs_f64;
    assert_eq!(from(f64::NAN), Timestamp::EPOCH);
    assert_eq!(from(f64::INFINITY), Timestamp::MAX);
    assert_eq!(from(f64::NEG_INFINITY), Timestamp::MIN);
    assert_eq!(from(1e300), Timestamp::MAX);
    assert_eq!(from(-1e300), Timestamp::MIN);
    assert_eq!(from(-0.0), Timestamp::EPOCH);
    assert_eq!(from(f64::from_bits(1)), Timestamp::EPOCH);
    assert_eq!(Timestamp::try_from_unix_secs_f64(f64::NEG_INFINITY), None);
}

#[test]
fn the_edges_of_i64_saturate_as_the_reference_does() {
    // The doubles around 2^63 µs, either side of zero.
    let edge = (1u64 << 63) as f64 / 1e6;
    let near = [
        edge.next_down().next_down(),
        edge.next_down(),
        edge,
        edge.next_up(),
    ];
    let mut saturated = 0;
    for x in near.into_iter().flat_map(|x| [x, -x]) {
        let got = Timestamp::from_unix_secs_f64(x).as_unix_micros();
        assert_eq!(got, reference_micros(x, ALL_DIGITS), "{x:?}");
        saturated += usize::from(got == i64::MAX || got == i64::MIN);
    }
    assert!(
        0 < saturated && saturated < 8,
        "the edge is inside the sample"
    );
}
