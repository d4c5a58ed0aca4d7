"""The chaos suite's impostor: a second agent that presents the real worker
token and reports `Finished` for a rank placed on another worker.

Usage: impersonate.py WORKER_ADDR TOKEN_FILE DATABASE
Prints one JSON object: the task it spoke for, the worker that task is placed
on, the status the coordinator answered with, and the audit rows about it.
"""

import json
import queue
import sqlite3
import sys

import grpc

from scop.v1 import common_pb2, worker_pb2, worker_pb2_grpc


def placed_task(database):
    """A rank of a live attempt: (task_id, rank, worker_id)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT r.task_id, r.rank, r.worker_id FROM attempt_ranks r "
            "JOIN attempts a ON a.id = r.attempt_id WHERE a.state IN ('running', 'starting', 'pending') "
            "ORDER BY r.rank LIMIT 1"
        ).fetchone()
    if row is None:
        sys.exit("no live attempt to impersonate a worker of")
    return row


def audit_rows(database, task_id):
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT user, action, target, detail FROM audit WHERE target = ?", (task_id,)
        ).fetchall()


def main():
    addr, token_file, database = sys.argv[1:4]
    token = next(
        line.strip()
        for line in open(token_file)
        if line.strip() and not line.startswith("#")
    )
    task_id, rank, placed_on = placed_task(database)
    outgoing = queue.Queue()
    hello = worker_pb2.Hello(
        hostname="impostor",
        agent_version="0.0.0",
        devices=[common_pb2.Device(kind="cpu", index=0, name="cpu")],
        cpu_cores=1,
    )
    outgoing.put(worker_pb2.WorkerMessage(hello=hello))

    def requests():
        while True:
            message = outgoing.get()
            if message is None:
                return
            yield message

    channel = grpc.insecure_channel(addr)
    stub = worker_pb2_grpc.WorkerServiceStub(channel)
    replies = stub.Connect(requests(), metadata=[("authorization", f"Bearer {token}")], timeout=30)
    answer = {"task_id": task_id, "placed_on": placed_on}
    try:
        for reply in replies:
            if reply.HasField("welcome"):
                answer["impostor_id"] = reply.welcome.worker_id
                finished = worker_pb2.TaskFinished(metrics={"top1": 1.0})
                event = worker_pb2.TaskEvent(task_id=task_id, rank=rank, sequence=1, finished=finished)
                outgoing.put(worker_pb2.WorkerMessage(task_event=event))
        answer["code"] = "OK"
    except grpc.RpcError as error:
        answer["code"] = error.code().name
        answer["details"] = error.details()
    outgoing.put(None)
    answer["audit"] = [list(row) for row in audit_rows(database, task_id)]
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
