"""The outbox: print reports, order-status webhooks, table-tracker webhooks, signals.

`service.DeliveryService` sends it, `ledger` records what happened, `policy` tunes it.

Guarantees, and what they cost:

- **At-least-once.** A row is written in the transaction of the change it reports
  (`store.outbox.enqueue`) and stays pending until a receiver answered 2xx or it is dead. The
  attempt counter is committed *before* each request leaves, so a crash (kill -9) between that
  commit and the answer never loses the count (attempts never exceed the schedule's 10) and,
  on restart, the row is sent again. A row can therefore arrive twice: every attempt carries the
  same `webhook-id` header (the row's event id) so receivers can drop duplicates.
- **FIFO per endpoint** (`scheme://host:port`): an endpoint's next row is not sent before the
  previous one is delivered or dead. Different endpoints proceed concurrently, at most
  `max_inflight_endpoints` at once, served round-robin so a long backlog cannot starve others.
- **Schedule** (seed 003, webhook delivery): after a failed attempt n, the next one follows
  `schedule[n-1]` seconds later, ±`jitter`; after the last one the row is dead
  ("max-retries"). 410 kills the row at once ("gone"); 429/503 with Retry-After delay the
  next attempt to at least that time; redirects are not followed (a 3xx is a failure); URLs
  that `core.netguard` refuses are never contacted ("invalid-url"), and host names resolving
  only to loopback/link-local addresses are refused at connect time.
- **Offline is not the receiver's fault** (`outbox.uplink`). When a request to an endpoint
  that needs the internet gets no HTTP answer, the uplink is checked; if the gateway itself is
  offline the attempt is given back (`outbox.refund_attempt`, hook event `retry` with code
  `offline`) and such endpoints are held (not tried, no attempt spent, schedule unchanged)
  until the uplink answers again. A weekend offline therefore costs no attempts; the backlog
  then drains in order.
- **Batches; live traffic first.** A backlog goes in batches: one commit counts the attempts
  of an endpoint's next `batch` rows (the first row of a drain goes alone, so a receiver that
  fails costs one request), they are sent one at a time, and one commit settles them and begins
  the next batch: about 1/`batch` commit per delivery. A batch stops at its first failure and
  gives the rows it did not send their attempts back (hook event `retry`, no code). A crash
  mid-batch can thus charge the rows behind the one on the wire one attempt they never used
  (at most one per crash; never the reverse). While order changes are being made (one in the
  last `quiet` seconds) all endpoints together send at most `busy_rate` requests/s, so a
  backlog does not take the CPU from live orders; when the gateway is quiet it drains at full
  speed.
- **Signatures.** `register_signer(kind, signer)` adds headers to each attempt of a kind's rows
  (Standard Webhooks: `webhook-timestamp`, `webhook-signature`, see `outbox.signing`).
- **Hooks.** A service that owns the changes behind a row kind (printing: the request's
  `report` block; a subscription that answered 410) registers a hook that runs on the writer
  thread inside the transaction that updates the outbox row, so its own state can never
  disagree with the outbox.
- **Pruning.** Delivered rows are deleted after `keep_delivered` seconds, dead ones after
  `keep_dead`, in short chunks that never hold the writer for long.

Time and waiting come from the injected Clock (`now`, `monotonic`, `sleep`), so tests run the
whole ten-attempt schedule in milliseconds.
"""
