"""The print queue against the in-repo fake printer on real TCP: EDF, holds, retries, answers."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.core.errors import Conflict, ValidationFailed
from gateway.core.models import Order, OrderState
from gateway.core.printing import Command, DeviceStatus, ErrorCode, ProcessStatus, Source
from gateway.services.printing.service import DeviceSpec
from tests.printers.fake_printer import FakePrinter, free_port
from tests.support.print_harness import harness, texts


async def test_prints_once_and_archives_with_output(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "Two espresso\nOne latte")
        assert r.process_status is ProcessStatus.QUEUEING
        done = await h.finished("kp", r.id)
        assert done.process_status is ProcessStatus.ARCHIVED and done.error is None
        assert done.output_data == {"printed": True}
        assert done.date_sent is not None and done.date_received is not None
        assert done.attempts == 1
        assert len(fake.printed) == 1 and "Two espresso" in texts(fake.printed)[0]
        await h.until(lambda: h.svc.devices["kp"].is_online)
        assert h.svc.devices["kp"].status in (DeviceStatus.IDLE, DeviceStatus.PRINTING)


async def test_earliest_deadline_first_with_shuffled_deadlines(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db", start=False) as h:
        await h.add_tcp("kp", fake.port)
        now = time.time()
        offsets = list(range(10))
        random.Random(7).shuffle(offsets)
        ids = []
        for off in offsets:
            r = await h.svc.submit(
                "kp", Command.PRINT_TEXT, f"ticket {off:02d}", deadline=now + 60 + off * 5
            )
            ids.append(r.id)
        await h.svc.start()
        await h.until(lambda: len(fake.printed) == 10)
        printed = [t.split("ticket ")[1][:2] for t in texts(fake.printed)]
        assert printed == [f"{i:02d}" for i in range(10)]


async def test_paper_out_holds_the_job_and_prints_it_once(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        await h.until(lambda: h.svc.devices["kp"].is_online)
        fake.set_paper_out(True)
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "held soup")
        await h.until(lambda: h.svc.open[r.id].process_status is ProcessStatus.WAITING_ACK)
        await h.until(lambda: h.svc.devices["kp"].status is DeviceStatus.OUT_OF_PAPER)
        await asyncio.sleep(0.8)  # several hold polls: still one connection with the job
        assert fake.printed == [] and len(fake.jobs) == 1
        fake.set_paper_out(False)
        done = await h.finished("kp", r.id)
        assert done.error is None and done.output_data == {"printed": True}
        assert done.attempts == 1
        assert len(fake.printed) == 1 and "held soup" in texts(fake.printed)[0]
        await h.until(lambda: h.svc.devices["kp"].status is not DeviceStatus.OUT_OF_PAPER)


async def test_power_cut_mid_job_resends_same_id_and_prints_once(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        await h.until(lambda: h.svc.devices["kp"].is_online)
        fake.disconnect_after = 40  # the printer dies 40 bytes into the job: it is lost
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "grilled fish " * 10)
        await h.until(
            lambda: (
                h.svc.open.get(r.id) is not None
                and h.svc.open[r.id].attempts >= 1
                and len(fake.jobs) >= 1
            )
        )
        fake.disconnect_after = None  # power back
        done = await h.finished("kp", r.id)
        assert done.id == r.id and done.error is None
        assert done.attempts == 2
        assert len(fake.printed) == 1
        # The resend says so: a cook holding a partial first ticket knows the second is it.
        assert "REPRINT" in texts(fake.printed)[0]


async def test_link_always_breaking_ends_in_max_retries(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db", max_retries=3) as h:
        await h.add_tcp("kp", fake.port)
        fake.disconnect_after = 10
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "never printed " * 5)
        done = await h.finished("kp", r.id)
        assert done.error is not None and done.error.code is ErrorCode.MAX_RETRIES
        assert done.attempts == 3 and fake.printed == []


async def test_unreachable_printer_expires_with_network_timeout(tmp_path: Path) -> None:
    async with harness(tmp_path / "db") as h:
        await h.add_tcp("kp", free_port())
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "lost", deadline=time.time() + 1.0)
        done = await h.finished("kp", r.id)
        assert done.error is not None and done.error.code is ErrorCode.NETWORK_TIMEOUT
        assert done.attempts == 0  # nothing was ever sent
        assert not h.svc.devices["kp"].is_online
        assert h.svc.devices["kp"].status_detail == "unreachable"


async def test_held_past_deadline_is_incompatible_device_state(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        await h.until(lambda: h.svc.devices["kp"].is_online)
        fake.set_paper_out(True)
        held = await h.svc.submit("kp", Command.PRINT_TEXT, "a", deadline=time.time() + 1.0)
        queued = await h.svc.submit("kp", Command.PRINT_TEXT, "b", deadline=time.time() + 1.2)
        for rid in (held.id, queued.id):
            done = await h.finished("kp", rid)
            assert done.error is not None
            assert done.error.code is ErrorCode.INCOMPATIBLE_DEVICE_STATE, done.error


async def test_deadline_expiry_of_a_queued_request(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        fake.processing_delay = 1.5  # a slow impact printer busy with the first ticket
        first = await h.svc.submit("kp", Command.PRINT_TEXT, "slow")
        await h.until(lambda: h.svc.open[first.id].process_status is not ProcessStatus.QUEUEING)
        late = await h.svc.submit("kp", Command.PRINT_TEXT, "late", deadline=time.time() + 0.5)
        done = await h.finished("kp", late.id)
        assert done.error is not None and done.error.code is ErrorCode.DEADLINE
        assert done.error.process_status is ProcessStatus.QUEUEING


async def test_accept_flow(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit("kp", Command.PRINT_ORDER, "1x Margherita\n1x Tiramisu")
        await h.until(lambda: h.svc.open[r.id].process_status is ProcessStatus.WAITING_OUTPUT)
        await h.until(lambda: h.svc.devices["kp"].status is DeviceStatus.WAITING_ORDER_RESPONSE)
        assert "Margherita" in texts(fake.printed)[0] and r.id[-6:] in texts(fake.printed)[0]
        done = await h.svc.respond("kp", r.id, True, 15)
        assert done.process_status is ProcessStatus.ARCHIVED
        assert done.output_data == {"accepted": True, "time": 15}
        assert done.date_received is not None
        assert h.svc.devices["kp"].status is DeviceStatus.IDLE
        with pytest.raises(Conflict):
            await h.svc.respond("kp", r.id, False, None)  # answered once, not twice


async def test_refuse_flow_and_bad_answers(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit(
            "kp",
            Command.PRINT_ORDER,
            {"number": "42", "items": [{"title": "Soup", "quantity": 2, "notes": "no salt"}]},
        )
        await h.until(lambda: h.svc.open[r.id].process_status is ProcessStatus.WAITING_OUTPUT)
        for accepted, minutes in (("yes", 5), (True, None), (True, -1), (True, 2000)):
            with pytest.raises(ValidationFailed):
                await h.svc.respond("kp", r.id, accepted, minutes)
        done = await h.svc.respond("kp", r.id, False, None)
        assert done.output_data == {"accepted": False, "time": None}
        assert "Soup" in texts(fake.printed)[0] and "no salt" in texts(fake.printed)[0]


async def test_unanswered_order_expires_with_deadline(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit("kp", Command.PRINT_ORDER, "1x Pizza", deadline=time.time() + 1.0)
        done = await h.finished("kp", r.id)
        assert done.error is not None and done.error.code is ErrorCode.DEADLINE
        assert done.error.process_status is ProcessStatus.WAITING_OUTPUT
        assert len(fake.printed) == 1


async def test_queued_requests_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "db"
    async with FakePrinter() as fake:
        async with harness(db, start=False) as h:
            await h.add_tcp("kp", fake.port)
            r = await h.svc.submit("kp", Command.PRINT_TEXT, "after restart")
        async with harness(db) as h2:
            done = await h2.finished("kp", r.id)
            assert done.error is None
        assert len(fake.printed) == 1 and "REPRINT" not in texts(fake.printed)[0]


async def test_a_send_cut_by_a_crash_is_resent_as_a_reprint(tmp_path: Path) -> None:
    db = tmp_path / "db"
    async with FakePrinter() as fake:
        async with harness(db, start=False) as h:
            await h.add_tcp("kp", fake.port)
            r = await h.svc.submit("kp", Command.PRINT_TEXT, "maybe printed")
        conn = sqlite3.connect(db)  # as the crash left it: committed sending-input
        conn.execute("UPDATE print_requests SET process_status='sending-input', attempts=1")
        conn.commit()
        conn.close()
        async with harness(db) as h2:
            done = await h2.finished("kp", r.id)
            assert done.error is None and done.attempts == 2
        assert "REPRINT" in texts(fake.printed)[0]


async def test_station_tickets_fall_back_to_a_working_printer(tmp_path: Path) -> None:
    async with FakePrinter() as bar, harness(tmp_path / "db") as h:
        await h.add_tcp("kitchen1", free_port(), station="kitchen")  # switched off
        await h.add_tcp("kitchen2", bar.port, station="kitchen")
        await h.until(
            lambda: (
                not h.svc.devices["kitchen1"].is_online
                and h.svc.devices["kitchen1"].status_date is not None
                and h.svc.devices["kitchen2"].is_online
            )
        )
        r = await h.svc.submit_to_station("kitchen", Command.PRINT_TEXT, "to the fallback")
        assert r.device_id == "kitchen2"
        done = await h.finished("kitchen2", r.id)
        assert done.error is None and len(bar.printed) == 1


async def test_queued_station_ticket_moves_when_its_printer_dies(tmp_path: Path) -> None:
    async with FakePrinter() as a, FakePrinter() as b, harness(tmp_path / "db") as h:
        await h.add_tcp("k1", a.port, station="kitchen")
        await h.add_tcp("k2", b.port, station="kitchen")
        await h.until(lambda: h.svc.devices["k1"].is_online and h.svc.devices["k2"].is_online)
        a.set_paper_out(True)
        first = await h.svc.submit_to_station("kitchen", Command.PRINT_TEXT, "held on k1")
        assert first.device_id == "k1"
        await h.until(lambda: h.svc.devices["k1"].status is DeviceStatus.OUT_OF_PAPER)
        second = await h.svc.submit_to_station("kitchen", Command.PRINT_TEXT, "goes to k2")
        assert second.device_id == "k2"
        assert (await h.finished("k2", second.id)).error is None
        a.set_paper_out(False)
        assert (await h.finished("k1", first.id)).error is None
        assert len(a.printed) == 1 and len(b.printed) == 1


async def test_kitchen_ticket_commits_with_the_order(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db", kitchen_station="kitchen") as h:
        await h.add_tcp("kp", fake.port, station="kitchen")
        order = Order(
            "6f1c0d1e-0000-4000-8000-000000000001",
            "57",
            "TO_GO",
            "",
            OrderState.STARTED,
            time.time(),
            time.time(),
        )
        h.orders[order.uuid] = order

        def job(conn: sqlite3.Connection) -> None:
            from gateway.core.events import OrderEvent, OrderEventType

            h.svc.order_hook(conn, OrderEvent(1, OrderEventType.NEW_ORDER, time.time(), order))

        await h.writer.run(job)
        from gateway.core.events import OrderEvent, OrderEventType

        h.svc.on_event(OrderEvent(1, OrderEventType.NEW_ORDER, time.time(), order))
        await h.until(lambda: len(fake.printed) == 1)
        text = texts(fake.printed)[0]
        assert "#57" in text and "takeaway" in text


async def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path / "db") as h:
        await h.add_tcp("kp", free_port())
        bad = [
            dict(command=Command.PRINT_TEXT, data=42),
            dict(command=Command.PRINT_TEXT, data=""),
            dict(command=Command.PRINT_ORDER, data={"orderId": "nope"}),
            dict(command=Command.PRINT_ORDER, data={"number": "1", "extra": 1}),
            dict(command=Command.PRINT_RECEIPT, data={"lines": []}),
            dict(command=Command.PRINT_RECEIPT, data={"lines": [{"title": "x", "unitPrice": 1.5}]}),
            dict(command=Command.OPEN_DRAWER, data={"pin": 3}),
            dict(command=Command.PRINT_TEXT, data="x", deadline=time.time() - 1),
            dict(command=Command.PRINT_TEXT, data="x", reserved="é"),
            dict(command=Command.PRINT_TEXT, data="x", reserved="x" * 61),
            dict(command=Command.PRINT_TEXT, data="x", report_url="http://169.254.169.254/"),
        ]
        for kwargs in bad:
            with pytest.raises(ValidationFailed):
                await h.svc.submit("kp", **kwargs)  # type: ignore[arg-type]
        _, total = await h.svc.list_requests("kp", 100, 0)
        assert total == 0 and not h.svc.open


async def test_silent_printer_is_not_resent_and_says_unconfirmed(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        fake.gs_r_reply = b""  # takes the data, never acknowledges, reports no fault
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "did it print?")
        done = await h.finished("kp", r.id)
        assert done.error is not None and done.error.code is ErrorCode.UNKNOWN
        assert "not resent" in (done.error.message or "")
        assert done.attempts == 1 and len(fake.jobs) == 1  # one send, never a second


async def test_receipt_and_drawer_commands_print(tmp_path: Path) -> None:
    async with FakePrinter() as fake, harness(tmp_path / "db") as h:
        await h.add_tcp("kp", fake.port)
        receipt = await h.svc.submit(
            "kp",
            Command.PRINT_RECEIPT,
            {
                "number": "31",
                "lines": [{"title": "Espresso", "quantity": 2, "unitPrice": 180}],
                "totals": [{"label": "Total", "amount": 360, "emphasis": True}],
                "footer": "Grazie!",
            },
        )
        drawer = await h.svc.submit("kp", Command.OPEN_DRAWER, {"pin": 5})
        assert (await h.finished("kp", receipt.id)).output_data == {"printed": True}
        assert (await h.finished("kp", drawer.id)).output_data == {"opened": True}
        text = "\n".join(texts(fake.printed))
        assert "2x Espresso" in text and "3.60 EUR" in text and "Grazie!" in text
        assert any(b"\x1bp\x01" in job for job in fake.printed)  # ESC p, pin 5


async def test_an_expired_job_is_archived_where_the_worker_finds_it(tmp_path: Path) -> None:
    """A worker that meets a job past its deadline settles it there and then (issue: a worker
    that left it to the sweeper picked it again at once and never yielded the loop)."""
    from gateway.compose.printer_link import make_link
    from gateway.core.netguard import ConnectGuard
    from gateway.services.printing.worker import DeviceWorker

    async with harness(tmp_path / "db", start=False) as h:
        await h.svc.add_device(DeviceSpec("nowhere", "virtual://nowhere", id="vp"), Source.API)
        r = await h.svc.submit("vp", Command.PRINT_TEXT, "late", deadline=time.time() + 0.2)
        await asyncio.sleep(0.3)
        guard = ConnectGuard(frozenset())
        worker = DeviceWorker(
            h.svc.queue,
            "vp",
            make_link(h.svc.devices["vp"], {}, guard),
            render=lambda r, d: b"",
            wake=lambda did: None,
        )
        await asyncio.wait_for(worker._step(), 5)
        assert r.id not in h.svc.open
        done = await h.svc.request("vp", r.id)
        assert done.error is not None and done.error.code is ErrorCode.NETWORK_TIMEOUT
        assert done.attempts == 0


async def test_jobs_that_expired_while_stopped_are_settled_before_the_workers_start(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path / "db", start=False) as h:
        await h.svc.add_device(DeviceSpec("nowhere", "virtual://nowhere", id="vp"), Source.API)
        ids = [
            (
                await h.svc.submit(
                    "vp", Command.PRINT_TEXT, f"late {i}", deadline=time.time() + 0.2
                )
            ).id
            for i in range(3)
        ]
    await asyncio.sleep(0.3)
    async with harness(tmp_path / "db", start=False) as h:
        assert all(rid in h.svc.open for rid in ids)
        await h.svc.start()
        assert not [rid for rid in ids if rid in h.svc.open]  # settled before any worker ran
        for rid in ids:
            done = await h.svc.request("vp", rid)
            # The printer was never reached: network-timeout is the seed's word for it.
            assert done.error is not None and done.error.code is ErrorCode.NETWORK_TIMEOUT
