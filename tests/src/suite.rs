//! The macros that turn the [`contract`](crate::contract) bodies into tests.
//!
//! The list of bodies lives in one place, [`__contract_test_list!`]; a unit
//! test below checks it names every `pub async fn` of the contract modules.

/// Emits the whole contract suite for one factory on one runtime: a module
/// `$name` holding one module per family and one `#[test]` per body.
///
/// ```ignore
/// tokenstore_tests::contract_suite!(memory_tokio, MemoryFactory, Tokio);
/// // => memory_tokio::sessions::rotation_invalidates_old_tokens, ...
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
                oversized_keys_states_and_codes,
                oversized_keys_sessions_and_clients,
                max_size_keys_accepted,
                key_limit_counts_bytes,
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
            bulk {
                store_matches_single_calls,
                stored_sessions_load_by_every_key,
                delete_matches_single_calls,
                delete_hundred_thousand_hashes,
                cleanup_matches_single_cleanup,
                store_with_invalid_session_rejected_whole,
                empty_batches_change_nothing,
            }
            model {
                scripts_match_reference_model,
                long_script_matches_reference_model,
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
    /// Every `pub async fn` in the contract modules, as `"family::test"`.
    fn bodies() -> Vec<String> {
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
        let mut all = Vec::new();
        for (family, source) in sources {
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split('<').next().unwrap_or(rest);
                    all.push(format!("{family}::{name}"));
                }
            }
        }
        all.sort();
        all
    }

    #[test]
    fn every_body_is_listed_once() {
        let listed: &[&str] = crate::__contract_test_list!(__contract_test_names,);
        let mut listed: Vec<String> = listed.iter().map(|s| (*s).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, bodies());
        assert!(listed.len() >= 60, "only {} tests", listed.len());
    }
}
