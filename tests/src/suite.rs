//! The macros that turn the [`contract`](crate::contract) bodies into tests.
//!
//! The list of bodies lives in one place, [`__contract_test_list!`]; a unit
//! test below checks it names every `pub async fn` of the contract modules.

/// Emits the whole contract suite for one factory on one runtime: a module
/// `$name` holding one module per family and one `#[test]` per body.
///
/// ```text
/// tokenstore_tests::contract_suite!(memory_tokio, MemoryFactory, Tokio);
/// // => memory_tokio::sessions::rotation_invalidates_old_tokens, ...
/// ```
///
/// A stack without the bulk capability is declared so, and gets one test
/// that checks `bulk()` is `None` instead of the bulk family (whose bodies
/// require the capability):
///
/// ```text
/// tokenstore_tests::contract_suite!(buffered_memory_tokio, Buffered<MemoryFactory, false>, Tokio, without bulk);
/// ```
///
/// The factory and runtime types are resolved where the macro is called.
#[macro_export]
macro_rules! contract_suite {
    ($name:ident, $factory:ty, $runtime:ty $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__contract_test_list!(__contract_tests, $factory, $runtime);
            $crate::__contract_bulk_list!(__contract_tests, $factory, $runtime);
        }
    };
    ($name:ident, $factory:ty, $runtime:ty, without bulk $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__contract_test_list!(__contract_tests, $factory, $runtime);
            $crate::__contract_tests! { ($factory, $runtime) bulk { not_advertised } }
        }
    };
}

/// Calls `$crate::$callback! { ($args) family { test, ... } ... }` with every
/// contract test body.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_test_list {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! {
            ($($args)*)
            states {
                round_trip_every_field,
                round_trip_minimal,
                consume_is_one_time,
                unknown_is_none,
                expired_not_returned_and_removed,
                expiry_boundary,
                store_replaces_same_key,
                consume_leaves_others,
            }
            auth_codes {
                round_trip_every_field,
                round_trip_minimal,
                load_is_non_consuming,
                unknown_is_none,
                delete_removes_only_it,
                try_delete_true_exactly_once,
                try_delete_unknown_is_false,
                expired_not_returned_and_removed,
                try_delete_expired_is_false,
                expiry_boundary,
                store_replaces_same_code,
            }
            sessions {
                round_trip_every_field_by_token,
                round_trip_every_field_by_id,
                round_trip_every_field_by_refresh,
                round_trip_minimal,
                issued_at_is_created_at,
                unknown_is_none,
                keys_are_not_interchangeable,
                access_expired_refresh_live,
                both_expired_deleted_by_token,
                both_expired_deleted_by_id,
                both_expired_deleted_by_refresh,
                no_refresh_deleted_on_access_expiry,
                refresh_without_expiry_never_expires,
                refresh_expired_access_live,
                access_expiry_boundary,
                refresh_expiry_boundary,
                rotation_invalidates_old_tokens,
                shared_refresh_token_replaces,
                shared_session_id_replaces,
                shared_access_token_replaces,
                sharing_with_two_replaces_both,
                delete_by_token,
                delete_by_id,
                deletes_are_idempotent,
                store_after_delete,
                isolation_of_many,
            }
            clients {
                round_trip_every_field,
                round_trip_minimal,
                every_auth_method_round_trips,
                unknown_is_none,
                list_empty,
                list_sorted_by_client_id,
                delete_removes_only_it,
                store_replaces_same_id,
                clients_do_not_expire,
            }
            cleanup {
                nothing_expired_removes_nothing,
                counts_per_kind,
                what_remains_is_loadable,
                keeps_session_with_live_refresh,
                boundary_keeps_records_expiring_now,
                second_run_removes_nothing,
                far_future_removes_all_expiring,
            }
            bad_input {
                empty_keys_states,
                empty_keys_auth_codes,
                empty_keys_sessions,
                empty_keys_clients,
                empty_refresh_token,
                session_without_access_expiry,
                profile_depth_limit,
                oversized_keys_states_and_codes,
                oversized_keys_sessions_and_clients,
                max_size_keys_accepted,
                key_limit_counts_bytes,
                nul_in_keys_states_and_codes,
                nul_in_keys_sessions_and_clients,
                nul_in_text_fields_states_and_codes,
                nul_in_text_fields_sessions_and_clients,
                nul_in_json_fields_round_trips,
                time_before_min_storable_refused,
                min_storable_time_round_trips,
                closed_store_refuses_everything,
                close_is_idempotent,
            }
            secrets {
                records_debug_hides_secrets,
                store_debug_hides_secrets,
                errors_hide_secrets,
            }
            concurrency {
                try_delete_exactly_one_winner,
                try_delete_one_winner_per_code,
                consume_state_exactly_one_winner,
                parallel_stores_all_land,
                concurrent_rotations_leave_one,
                reads_unaffected_by_other_writes,
            }
            model {
                scripts_match_reference_model,
                long_script_matches_reference_model,
            }
        }
    };
}

/// Calls `$crate::$callback!` with the bodies of the bulk family, emitted only
/// for stacks that advertise the bulk capability.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_bulk_list {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! {
            ($($args)*)
            bulk {
                store_matches_single_calls,
                stored_sessions_load_by_every_key,
                delete_matches_single_calls,
                delete_hundred_thousand_hashes,
                cleanup_matches_single_cleanup,
                store_with_invalid_session_rejected_whole,
                empty_batches_change_nothing,
            }
        }
    };
}

/// Emits one module per family and one `#[test]` per body.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    (($factory:ty, $runtime:ty) $($family:ident { $($test:ident),* $(,)? })*) => {
        $(
            mod $family {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $test() {
                        <$runtime as $crate::Runtime>::block_on(
                            $crate::contract::$family::$test::<$factory, $runtime>(),
                        );
                    }
                )*
            }
        )*
    };
}

/// Emits the read cache's suite ([`cache`](crate::cache)) over the delegate
/// made by `$factory`, on one runtime: a module `$name` holding one module per
/// family and one `#[test]` per body.
///
/// ```text
/// tokenstore_tests::cache_suite!(cache_memory_tokio, MemoryFactory, Tokio);
/// // => cache_memory_tokio::races::single_flight_hundred_misses, ...
/// ```
#[macro_export]
macro_rules! cache_suite {
    ($name:ident, $factory:ty, $runtime:ty $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__cache_test_list!(__cache_tests, $factory, $runtime);
        }
    };
}

/// Emits the machine-level bodies of [`cache::machine`](crate::cache::machine)
/// once, as plain `#[test]`s in a module `$name` (they need no runtime and no
/// delegate).
#[macro_export]
macro_rules! cache_machine_suite {
    ($name:ident $(,)?) => {
        mod $name {
            $crate::__cache_machine_test_list!(__cache_machine_tests,);
        }
    };
}

/// Calls `$crate::$callback! { ($args) family { test, ... } ... }` with every
/// cache suite body.
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_test_list {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! {
            ($($args)*)
            reads {
                session_by_token_miss_then_hit,
                session_by_id_miss_then_hit,
                session_by_refresh_miss_then_hit,
                one_fill_serves_every_key,
                auth_code_miss_then_hit,
                client_miss_then_hit,
                uncached_calls_pass_through,
                contract_config_caches,
                delegate_errors_are_not_cached,
            }
            expiry {
                session_served_until_access_expiry_minus_skew,
                session_served_until_refresh_expiry_minus_skew,
                access_expired_not_served_by_token_or_id,
                ttl_cap_bounds_session_lifetime,
                ttl_cap_bounds_client_lifetime,
                auth_code_served_until_expiry_minus_skew,
                record_inside_skew_window_not_cached,
                never_serves_expired_records,
                clock_resolution_widens_skew,
                expired_state_never_served,
            }
            negatives {
                unknown_keys_are_cached,
                negative_entry_expires_after_negative_ttl,
                store_session_clears_negatives,
                store_code_and_client_clear_negatives,
                rotation_clears_negatives_of_new_tokens,
            }
            invalidation {
                store_replaces_cached_session,
                rotation_hides_old_tokens,
                shared_refresh_token_evicts_other_session,
                delete_by_token_leaves_no_stale_read,
                delete_by_id_leaves_no_stale_read,
                bulk_writes_leave_no_stale_read,
                store_code_replaces_cached,
                delete_code_leaves_no_stale_read,
                try_delete_code_reaches_delegate,
                consume_state_reaches_delegate,
                client_writes_leave_no_stale_read,
            }
            staleness {
                backend_delete_seen_within_ttl_cap,
                backend_rotation_seen_within_ttl_cap,
                backend_store_seen_after_negative_ttl,
                backend_code_and_client_writes_seen_within_ttl_cap,
            }
            races {
                stale_fill_after_rotation_refused,
                stale_fill_after_delete_refused,
                stale_negative_fill_after_store_refused,
                single_flight_hundred_misses,
                single_flight_hundred_misses_of_unknown,
                cancelled_read_releases_its_key,
            }
            capacity {
                session_capacity_bounds_entries,
                code_and_client_capacity_bound_entries,
                negative_capacity_bounds_flood,
            }
            metrics {
                metrics_add_up_after_mixed_workload,
                debug_shows_no_identifiers,
            }
            shards {
                default_config_is_sharded,
                each_key_fills_its_own_shard,
                a_fill_serves_the_keys_in_its_shard,
                writes_by_any_key_evict_every_shard,
                rotation_leaves_no_shard_serving_old_tokens,
            }
        }
    };
}

/// Calls `$crate::$callback! { ($args) machine { test, ... } }` with every
/// machine-level body.
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_machine_test_list {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! {
            ($($args)*)
            machine {
                stale_fill_after_delete_refused,
                stale_fill_after_rotation_refused,
                stale_negative_fill_refused,
                unrelated_or_earlier_writes_do_not_refuse,
                second_miss_on_a_key_waits,
                negative_flood_stays_bounded,
            }
        }
    };
}

/// Emits one module per cache family and one `#[test]` per body.
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_tests {
    (($factory:ty, $runtime:ty) $($family:ident { $($test:ident),* $(,)? })*) => {
        $(
            mod $family {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $test() {
                        <$runtime as $crate::Runtime>::block_on(
                            $crate::cache::$family::$test::<$factory, $runtime>(),
                        );
                    }
                )*
            }
        )*
    };
}

/// Emits one `#[test]` per machine-level body.
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_machine_tests {
    (() $($family:ident { $($test:ident),* $(,)? })*) => {
        $(
            $(
                #[test]
                fn $test() {
                    $crate::cache::$family::$test();
                }
            )*
        )*
    };
}

/// Lists every body as `"family::test"` (for the unit test below).
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_test_names {
    (($($args:tt)*) $($family:ident { $($test:ident),* $(,)? })*) => {
        &[$($(concat!(stringify!($family), "::", stringify!($test))),*),*]
    };
}

#[cfg(test)]
mod tests {
    /// Every function of `sources` declared by a line starting with `prefix`
    /// (`"pub async fn "` or `"pub fn "`), as `"family::test"`.
    fn bodies(sources: &[(&str, &str)], prefix: &str) -> Vec<String> {
        let mut all = Vec::new();
        for (family, source) in sources {
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let name = rest.split(['<', '(']).next().unwrap_or(rest);
                    all.push(format!("{family}::{name}"));
                }
            }
        }
        all.sort();
        all
    }

    fn sorted(listed: &[&str]) -> Vec<String> {
        let mut listed: Vec<String> = listed.iter().map(|s| (*s).to_owned()).collect();
        listed.sort();
        listed
    }

    #[test]
    fn every_body_is_listed_once() {
        let sources = [
            ("states", include_str!("contract/states.rs")),
            ("auth_codes", include_str!("contract/auth_codes.rs")),
            ("sessions", include_str!("contract/sessions.rs")),
            ("clients", include_str!("contract/clients.rs")),
            ("cleanup", include_str!("contract/cleanup.rs")),
            ("bad_input", include_str!("contract/bad_input.rs")),
            ("secrets", include_str!("contract/secrets.rs")),
            ("concurrency", include_str!("contract/concurrency.rs")),
            ("bulk", include_str!("contract/bulk.rs")),
            ("model", include_str!("contract/model.rs")),
        ];
        let mut listed: Vec<&str> = crate::__contract_test_list!(__contract_test_names,).to_vec();
        listed.extend(crate::__contract_bulk_list!(__contract_test_names,));
        listed.push("bulk::not_advertised");
        let listed = sorted(&listed);
        assert_eq!(listed, bodies(&sources, "pub async fn "));
        assert!(listed.len() >= 60, "only {} tests", listed.len());
    }

    #[test]
    fn every_cache_body_is_listed_once() {
        let sources = [
            ("reads", include_str!("cache/reads.rs")),
            ("expiry", include_str!("cache/expiry.rs")),
            ("negatives", include_str!("cache/negatives.rs")),
            ("invalidation", include_str!("cache/invalidation.rs")),
            ("staleness", include_str!("cache/staleness.rs")),
            ("races", include_str!("cache/races.rs")),
            ("capacity", include_str!("cache/capacity.rs")),
            ("metrics", include_str!("cache/metrics.rs")),
            ("shards", include_str!("cache/shards.rs")),
        ];
        let listed = sorted(crate::__cache_test_list!(__contract_test_names,));
        assert_eq!(listed, bodies(&sources, "pub async fn "));
        let machine = [("machine", include_str!("cache/machine.rs"))];
        let listed = sorted(crate::__cache_machine_test_list!(__contract_test_names,));
        assert_eq!(listed, bodies(&machine, "pub fn "));
    }
}
