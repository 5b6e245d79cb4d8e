//! The read half of [`BufferMachine`]: loads answered from the buffer's writes
//! or from the delegate's answer with those writes laid over it, and the
//! one-time calls (see the type docs for the driving steps).

use super::op::OpHashes;
use super::overlay::{self, ClientList, OneTime, Read, ReadKind, ReadTicket};
use super::{APPLIED, BufferMachine};
use crate::{
    AuthCodeRecord, ClientRecord, SessionKey, StateRecord, StoredSession, Timestamp, WriteOp,
};
use std::sync::Arc;

impl BufferMachine {
    /// Decides a session read from the buffer's writes, or asks for the delegate.
    pub fn read_session(&mut self, now: Timestamp, key: &SessionKey) -> Read<StoredSession> {
        match overlay::session_after(self.held_hashed(), key, None) {
            Ok((held, _)) => Read::Known(self.visible_session(now, held, key)),
            Err(()) => Read::Ask(self.issue_read(key.clone())),
        }
    }

    /// The answer to a session read, given what the delegate answered.
    pub fn resolve_session(
        &mut self,
        now: Timestamp,
        ticket: ReadTicket<StoredSession>,
        answer: Option<Arc<StoredSession>>,
    ) -> Option<Arc<StoredSession>> {
        let key = &ticket.key;
        let (held, from_writes) =
            overlay::session_after(self.hashed_since(ticket.start), key, Some(answer))
                .expect("the delegate's answer is known");
        let key = self.redeem(ticket);
        if from_writes {
            self.visible_session(now, held, &key)
        } else {
            held
        }
    }

    /// Decides an authorization-code read from the buffer's writes, or asks.
    pub fn read_auth_code(&mut self, now: Timestamp, code: &str) -> Read<AuthCodeRecord> {
        match overlay::last_code(self.held_writes(), code) {
            Some(found) => Read::Known(self.live_code(now, found)),
            None => Read::Ask(self.issue_read(code.to_owned())),
        }
    }

    /// The answer to a code read, given what the delegate answered.
    pub fn resolve_auth_code(
        &mut self,
        now: Timestamp,
        ticket: ReadTicket<AuthCodeRecord>,
        answer: Option<Arc<AuthCodeRecord>>,
    ) -> Option<Arc<AuthCodeRecord>> {
        let found = overlay::last_code(self.writes_since(ticket.start), &ticket.key);
        self.redeem(ticket);
        match found {
            Some(found) => self.live_code(now, found),
            None => answer,
        }
    }

    /// Decides a client read from the buffer's writes, or asks.
    pub fn read_client(&mut self, client_id: &str) -> Read<ClientRecord> {
        match overlay::last_client(self.held_writes(), client_id) {
            Some(found) => Read::Known(found),
            None => Read::Ask(self.issue_read(client_id.to_owned())),
        }
    }

    /// The answer to a client read, given what the delegate answered.
    pub fn resolve_client(
        &mut self,
        ticket: ReadTicket<ClientRecord>,
        answer: Option<Arc<ClientRecord>>,
    ) -> Option<Arc<ClientRecord>> {
        let found = overlay::last_client(self.writes_since(ticket.start), &ticket.key);
        self.redeem(ticket);
        found.unwrap_or(answer)
    }

    /// A ticket for `list_clients` (the delegate is always asked).
    pub fn read_clients(&mut self) -> ReadTicket<ClientList> {
        self.issue_read(())
    }

    /// The client list, given the delegate's.
    pub fn resolve_clients(
        &mut self,
        ticket: ReadTicket<ClientList>,
        listed: Vec<Arc<ClientRecord>>,
    ) -> Vec<Arc<ClientRecord>> {
        let clients = overlay::clients_after(self.writes_since(ticket.start), listed);
        self.redeem(ticket);
        clients
    }

    /// Gives back a ticket whose delegate read failed or was dropped.
    pub fn abandon_read<T: ReadKind + ?Sized>(&mut self, ticket: ReadTicket<T>) {
        self.redeem(ticket);
    }

    /// Decides `consume_state` when the state's last write is still queued
    /// in the buffer (queueing its removal at the delegate); waits while a
    /// write of it is in the batch in flight ([`OneTime::AwaitBatch`]);
    /// otherwise the delegate decides.
    pub fn consume_state(
        &mut self,
        now: Timestamp,
        key: &str,
    ) -> OneTime<Option<Arc<StateRecord>>> {
        if overlay::last_state(self.flight_writes(), key).is_some() {
            return OneTime::AwaitBatch;
        }
        let Some(found) = overlay::last_state(self.held_writes(), key) else {
            return OneTime::AskDelegate;
        };
        if found.is_some() {
            self.accept_internal(now, WriteOp::RemoveState(key.to_owned()));
        }
        OneTime::Decided(found.filter(|s| !s.is_expired(now)))
    }

    /// Decides `try_delete_auth_code` when the code's last write is still
    /// queued in the buffer (queueing the delete); waits while a write of it
    /// is in the batch in flight ([`OneTime::AwaitBatch`]); otherwise the
    /// delegate decides.
    pub fn try_delete_auth_code(&mut self, now: Timestamp, code: &str) -> OneTime<bool> {
        if overlay::last_code(self.flight_writes(), code).is_some() {
            return OneTime::AwaitBatch;
        }
        let Some(found) = overlay::last_code(self.held_writes(), code) else {
            return OneTime::AskDelegate;
        };
        if found.is_some() {
            self.accept_internal(now, WriteOp::DeleteAuthCode(code.to_owned()));
        }
        OneTime::Decided(found.is_some_and(|c| !c.is_expired(now)))
    }

    /// Reports that the delegate decided `try_delete_auth_code(code)` (after
    /// [`OneTime::AskDelegate`]) and answered: the code is gone from the
    /// delegate. A read of it that was in flight then must not answer it from
    /// a write applied before, so the removal is retained like an applied
    /// write. Not needed when the delegate failed.
    pub fn handle_code_taken(&mut self, code: &str) {
        if self.reads.is_empty() {
            return;
        }
        let held = self.in_flight.iter().flat_map(|f| f.entries.iter());
        let oldest_held = held
            .map(|(seq, _)| *seq)
            .chain(self.queue.first_seq())
            .min()
            .unwrap_or(self.next_seq);
        // After any code already taken at this point.
        let n = self
            .retained
            .range((oldest_held, 0)..(oldest_held, APPLIED))
            .next_back()
            .map_or(1, |(&(_, n), _)| n + 1);
        self.retained.insert(
            (oldest_held, n),
            (
                WriteOp::DeleteAuthCode(code.to_owned()),
                OpHashes::default(),
            ),
        );
    }

    /// Delegate reads in flight.
    pub fn reads_in_flight(&self) -> usize {
        self.reads.len()
    }

    fn visible_session(
        &mut self,
        now: Timestamp,
        held: Option<Arc<StoredSession>>,
        key: &SessionKey,
    ) -> Option<Arc<StoredSession>> {
        let dead_token = held.as_ref().map(|s| s.access_token.clone());
        let (answer, dead) = overlay::visible_session(held, key, now);
        if let (true, Some(token)) = (dead, dead_token) {
            // The delegate deletes a dead session on read; so does the buffer.
            self.accept_internal(now, WriteOp::DeleteSessionByToken(token));
        }
        answer
    }

    fn live_code(
        &mut self,
        now: Timestamp,
        found: Option<Arc<AuthCodeRecord>>,
    ) -> Option<Arc<AuthCodeRecord>> {
        match found {
            Some(c) if c.is_expired(now) => {
                // The delegate removes an expired code on read; so does the buffer.
                self.accept_internal(now, WriteOp::DeleteAuthCode(c.code.clone()));
                None
            }
            other => other,
        }
    }

    fn issue_read<T: ReadKind + ?Sized>(&mut self, key: T::Key) -> ReadTicket<T> {
        let id = self.next_read;
        self.next_read += 1;
        let start = self.oldest_unapplied().unwrap_or(self.next_seq);
        self.reads.insert(id, start);
        ReadTicket { id, start, key }
    }

    /// Retires a ticket (dropping what no outstanding read needs any more);
    /// returns its key.
    fn redeem<T: ReadKind + ?Sized>(&mut self, ticket: ReadTicket<T>) -> T::Key {
        self.reads.remove(&ticket.id);
        match self.reads.values().min() {
            None => self.retained.clear(),
            Some(&oldest) => self.retained = self.retained.split_off(&(oldest, 0)),
        }
        ticket.key
    }

    /// Writes a read that began at `start` may not have seen, in order.
    fn writes_since(&self, start: u64) -> impl Iterator<Item = &WriteOp> + Clone {
        self.hashed_since(start).map(|(op, _)| op)
    }

    /// [`writes_since`](Self::writes_since) with the hashes each names.
    fn hashed_since(&self, start: u64) -> impl Iterator<Item = (&WriteOp, &OpHashes)> + Clone {
        self.retained
            .range((start, 0)..)
            .map(|(_, (op, hashes))| (op, hashes))
            .chain(self.held_hashed())
    }
}
