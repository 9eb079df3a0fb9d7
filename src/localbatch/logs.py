"""CloudWatch Logs for log group `/aws/batch/job`: GetLogEvents, DescribeLogStreams, FilterLogEvents.

Each attempt's stdout and stderr land, line by line, in its stream `<jobDefinitionName>/default/<taskId>`,
timestamped when localbatch read them. Only that log group exists. filterPattern supports plain terms
(every term must appear) and quoted phrases, not CloudWatch's JSON or metric patterns.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from localbatch.errors import LogsInvalidParameter, LogsResourceNotFound
from localbatch.models import ACCOUNT_ID, LOG_GROUP, now_ms
from localbatch.pagination import decode_token, encode_token
from localbatch.store import Store

MAX_EVENT_CHARS = 256 * 1024


@dataclass
class StreamInfo:
    created: int
    first_ts: int | None = None
    last_ts: int | None = None
    last_ingested: int | None = None
    stored_bytes: int = 0


class LogsBackend:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.streams: dict[str, StreamInfo] = {}

    def load(self) -> None:
        for name, created in self.store.query("SELECT name, created FROM log_streams"):
            self.streams[name] = StreamInfo(created)
        rows = self.store.query(
            "SELECT stream, MIN(ts), MAX(ts), MAX(ingested), SUM(LENGTH(message)) "
            "FROM log_events GROUP BY stream"
        )
        for stream, first, last, ingested, size in rows:
            info = self.streams.setdefault(stream, StreamInfo(first))
            info.first_ts, info.last_ts, info.last_ingested, info.stored_bytes = first, last, ingested, size

    # -- writes from the runner --------------------------------------------------------------------
    def create_stream(self, name: str) -> None:
        if name not in self.streams:
            created = now_ms()
            self.streams[name] = StreamInfo(created)
            self.store.add_stream(name, created)

    def append(self, name: str, events: list[tuple[int, str]]) -> None:
        if not events:
            return
        info = self.streams.get(name)
        if info is None:
            self.create_stream(name)
            info = self.streams[name]
        ingested = now_ms()
        events = [(ts, msg[:MAX_EVENT_CHARS]) for ts, msg in events]
        info.first_ts = events[0][0] if info.first_ts is None else info.first_ts
        info.last_ts = events[-1][0]
        info.last_ingested = ingested
        info.stored_bytes += sum(len(m) for _, m in events)
        self.store.add_events(name, events, ingested)

    # -- API ---------------------------------------------------------------------------------------
    @staticmethod
    def _group(p: dict[str, Any]) -> str:
        group: str | None = p.get("logGroupName") or p.get("logGroupIdentifier")
        if group is None:
            raise LogsInvalidParameter("Either logGroupName or logGroupIdentifier must be provided")
        if group.startswith("arn:"):
            group = group.split(":log-group:", 1)[-1].removesuffix(":*")
        if group != LOG_GROUP:
            raise LogsResourceNotFound("The specified log group does not exist.")
        return group

    def get_log_events(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        self._group(p)
        stream = p["logStreamName"]
        if stream not in self.streams:
            raise LogsResourceNotFound("The specified log stream does not exist.")
        limit = int(p.get("limit", 10000))
        where = ["stream = ?"]
        args: list[Any] = [stream]
        if "startTime" in p:
            where.append("ts >= ?")
            args.append(int(p["startTime"]))
        if "endTime" in p:
            where.append("ts < ?")
            args.append(int(p["endTime"]))
        token = p.get("nextToken")
        forward = bool(p.get("startFromHead", False))
        if token:
            direction, _, seq = token.partition("/")
            if direction not in ("f", "b") or not seq.isdigit():
                raise LogsInvalidParameter("The specified nextToken is invalid.")
            forward = direction == "f"
            where.append("seq > ?" if forward else "seq < ?")
            args.append(int(seq))
        clause = " AND ".join(where)
        if forward:
            rows = self.store.query(
                f"SELECT seq, ts, ingested, message FROM log_events WHERE {clause} ORDER BY seq LIMIT ?",
                (*args, limit),
            )
        else:
            rows = self.store.query(
                f"SELECT seq, ts, ingested, message FROM log_events WHERE {clause} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            )
            rows.reverse()
        if rows:
            first_seq, last_seq = rows[0][0], rows[-1][0]
        else:
            # At either end AWS hands back the token it was given, which ends a reader's loop.
            first_seq = last_seq = int(token.partition("/")[2]) if token else 0
        return {
            "events": [{"timestamp": ts, "message": msg, "ingestionTime": ing} for _, ts, ing, msg in rows],
            "nextForwardToken": f"f/{last_seq}",
            "nextBackwardToken": f"b/{first_seq}",
        }

    def describe_log_streams(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        group = self._group(p)
        prefix = p.get("logStreamNamePrefix", "")
        order_by = p.get("orderBy", "LogStreamName")
        if prefix and order_by == "LastEventTime":
            raise LogsInvalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
        names = [n for n in self.streams if n.startswith(prefix)]
        if order_by == "LastEventTime":
            names.sort(key=lambda n: (self.streams[n].last_ts or 0, n), reverse=bool(p.get("descending")))
        else:
            names.sort(reverse=bool(p.get("descending")))
        start = int(decode_token(p["nextToken"])) if p.get("nextToken") else 0
        limit = int(p.get("limit", 50))
        page = names[start : start + limit]
        streams = []
        for name in page:
            info = self.streams[name]
            item: dict[str, Any] = {
                "logStreamName": name,
                "creationTime": info.created,
                "arn": f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group}:log-stream:{name}",
                "storedBytes": info.stored_bytes,
            }
            if info.first_ts is not None:
                item["firstEventTimestamp"] = info.first_ts
                item["lastEventTimestamp"] = info.last_ts
                item["lastIngestionTime"] = info.last_ingested
            streams.append(item)
        result: dict[str, Any] = {"logStreams": streams}
        if start + limit < len(names):
            result["nextToken"] = encode_token(start + limit)
        return result

    def filter_log_events(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        self._group(p)
        where = ["1 = 1"]
        args: list[Any] = []
        if p.get("logStreamNames"):
            if p.get("logStreamNamePrefix"):
                raise LogsInvalidParameter("logStreamNames and logStreamNamePrefix are mutually exclusive")
            where.append(f"stream IN ({','.join('?' * len(p['logStreamNames']))})")
            args.extend(p["logStreamNames"])
        elif p.get("logStreamNamePrefix"):
            where.append("substr(stream, 1, ?) = ?")
            args.extend([len(p["logStreamNamePrefix"]), p["logStreamNamePrefix"]])
        if "startTime" in p:
            where.append("ts >= ?")
            args.append(int(p["startTime"]))
        if "endTime" in p:
            where.append("ts <= ?")
            args.append(int(p["endTime"]))
        for term in self._terms(p.get("filterPattern", "")):
            where.append("instr(message, ?) > 0")
            args.append(term)
        if p.get("nextToken"):
            where.append("seq > ?")
            args.append(int(decode_token(p["nextToken"])))
        limit = int(p.get("limit", 10000))
        rows = self.store.query(
            f"SELECT seq, stream, ts, ingested, message FROM log_events WHERE {' AND '.join(where)} "
            "ORDER BY ts, seq LIMIT ?",
            (*args, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        result: dict[str, Any] = {
            "events": [
                {"logStreamName": s, "timestamp": ts, "message": m, "ingestionTime": ing, "eventId": str(seq)}
                for seq, s, ts, ing, m in rows
            ],
            "searchedLogStreams": [],
        }
        if more:
            result["nextToken"] = encode_token(rows[-1][0])
        return result

    @staticmethod
    def _terms(pattern: str) -> list[str]:
        pattern = pattern.strip()
        if not pattern:
            return []
        if pattern.startswith("{") or pattern.startswith("["):
            raise LogsInvalidParameter(
                "localbatch supports only plain-term and quoted-phrase filter patterns"
            )
        try:
            return shlex.split(pattern)
        except ValueError as exc:
            raise LogsInvalidParameter(f"Invalid filter pattern: {exc}") from exc

    OPERATIONS: dict[str, str] = {
        "GetLogEvents": "get_log_events",
        "DescribeLogStreams": "describe_log_streams",
        "FilterLogEvents": "filter_log_events",
    }

    def dispatch(self, operation: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        method = self.OPERATIONS.get(operation)
        if method is None:
            raise LogsInvalidParameter(f"localbatch does not implement Logs {operation}")
        result: dict[str, Any] = getattr(self, method)(params, region)
        return result
