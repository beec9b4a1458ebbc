//! Carrying out the engine's actions at the end of a step: packets to the connections' write
//! queues, mail to the other shards (after the batch's records are written: `Steps`).

use musqratt_engine::{Action, Input};

use super::{Mail, Shard, Stream};

impl Shard {
    pub(super) fn drain_actions(&mut self) {
        loop {
            let conns = &self.conns;
            let Some(action) = self.joiner.next(
                || self.steps.poll_action(&mut self.engine),
                |conn| conns.get(&conn).is_some_and(|slot| slot.layered),
            ) else {
                break;
            };
            match action {
                Action::Send { conn, bytes } => {
                    // An empty payload comes as an empty chunk: nothing to write (and a write
                    // of nothing would look like a closed socket).
                    if bytes.is_empty() {
                        continue;
                    }
                    if let Some(slot) = self.conns.get_mut(&conn) {
                        // The task looks at its queue before every wait: only an empty queue
                        // becoming non-empty needs a wake-up.
                        let was_empty = slot.queue.is_empty();
                        if slot.layered {
                            let spare = &mut self.spare_queues;
                            let stack = self.stacks.get_mut(&conn);
                            let encoded = stack.map(|stack| {
                                stack.write(bytes, |chunk| slot.queue.push_back(chunk, spare))
                            });
                            if let Some(Err(error)) = encoded {
                                // The layer cannot go on: close, and tell the engine.
                                tracing::debug!(shard = self.id.0, %conn, %error, "connection lost");
                                slot.close = true;
                                self.lost.push(conn);
                                self.wake(conn);
                                continue;
                            }
                        } else {
                            slot.queue.push_back(bytes, &mut self.spare_queues);
                        }
                        // Written at the end of the step rather than by the connection's
                        // task: the delivery goes out before whatever the reading task does
                        // next (its own acknowledgement, another read), and from another
                        // shard's thread without waking this one. The task is woken only
                        // for what the socket does not take.
                        if was_empty && !slot.queue.is_empty() {
                            self.direct.push(conn);
                        }
                    }
                }
                Action::Close { conn } => {
                    if let Some(slot) = self.conns.get_mut(&conn) {
                        // The layers' last bytes (close_notify, a close frame) go out last.
                        if slot.layered
                            && let Some(stack) = self.stacks.get_mut(&conn)
                        {
                            let spare = &mut self.spare_queues;
                            stack.close(|chunk| slot.queue.push_back(chunk, spare));
                        }
                        slot.close = true;
                        self.wake(conn);
                    }
                }
                Action::Handoff { conn, to, bytes } => {
                    if let Some(slot) = self.conns.get_mut(&conn) {
                        slot.handoff = Some(Box::new((to, bytes)));
                        self.wake(conn);
                    }
                }
                Action::ToShard { to, message } => {
                    self.send_mail(to, Mail::Message { from: self.id, message });
                }
                Action::Authenticate { conn, request } => {
                    // An answer given later comes through `decisions` (`late_decisions`).
                    let socket = self.conns.get(&conn).and_then(|slot| match &slot.stream {
                        Stream::Awake(stream) => stream.peer_addr().ok(),
                        Stream::Hibernating(stream) => stream.peer_addr().ok(),
                        Stream::Moving => None,
                    });
                    let stack = self.stacks.get(&conn).map(|stack| &**stack);
                    let decision = self.auth.ask_for(conn, socket, stack, request, &self.decisions);
                    if let Some(decision) = decision {
                        let now = self.now();
                        self.engine.handle_input(now, Input::AuthDecision { conn, decision });
                    }
                }
                Action::SendDatagram { peer, bytes } => {
                    if let Some(udp) = &self.udp {
                        udp.send(peer, &bytes);
                    }
                }
                Action::HandoffPeer { peer, to, bytes } => {
                    if let Some(udp) = &self.udp {
                        udp.route(peer, musqratt_engine::wireless_node(&bytes), to);
                    }
                    self.send_mail(to, Mail::Datagram { peer, bytes });
                }
                Action::ReleasePeer { peer, node } => {
                    if let Some(udp) = &self.udp {
                        udp.release(peer, &node, self.id);
                    }
                }
                Action::SnBroadcast { bytes } => {
                    if let Some(udp) = &self.udp {
                        udp.broadcast(&bytes);
                    }
                }
                Action::Event(event) => self.events.log(&event),
                _ => {}
            }
        }
    }
}
