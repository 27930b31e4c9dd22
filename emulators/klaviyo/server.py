"""The Klaviyo API emulator: the endpoints a Singer target uses, with Klaviyo's rules.

Every ``/api`` request goes through the same gate, in Klaviyo's order of concerns: API key (401),
``revision`` header (400), the endpoint's rate limits (429 with ``Retry-After``), then for bodies
the media type (415) and the 5 MB ceiling (413), before the endpoint validates the body with the
official request models. Injected faults (429, 5xx, slow, dropped connections) come first, from
:class:`emulators.http.EmulatorServer`.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import unquote

from emulators.http import CONTROL_PREFIX, EmulatorServer, RateLimiter, Request, Response, route
from emulators.klaviyo import catalog as catalog_model
from emulators.klaviyo import event_jobs, filters, profile_jobs
from emulators.klaviyo import profiles as profile_model
from emulators.klaviyo import segments as segment_model
from emulators.klaviyo.event_log import EventLog
from emulators.klaviyo.ids import IdFactory
from emulators.klaviyo.jobs import JobScheduler
from emulators.klaviyo.jsonapi import (
    JSONAPI,
    ApiError,
    ErrorItem,
    additional_fields,
    decode_cursor,
    error_document,
    iso,
    page_links,
    parse_size,
    sparse_fields,
)
from emulators.klaviyo.limits import (
    MAX_PAYLOAD_BYTES,
    PROFILES_WITH_PREDICTIVE_ANALYTICS,
    RATE_LIMITS,
)

_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9_-]+)?$")
_MEDIA_TYPES = {JSONAPI, "application/json"}

ApiHandler = Callable[[Request], Response]


class KlaviyoEmulator(EmulatorServer):
    """Klaviyo's API on loopback, with its state readable from Python and over HTTP."""

    name = "klaviyo"

    def __init__(
        self,
        api_key: str = "pk_test",
        *,
        rate_limits: bool = True,
        time_scale: float = 1.0,
        job_delay: float = 0.1,
        keep_event_properties: bool = True,
        list_duplicates: bool = False,
        seed: int = 0,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host, port, seed=seed)
        if time_scale <= 0:
            msg = "time_scale must be positive"
            raise ValueError(msg)
        self._api_key = api_key
        self.rate_limits = rate_limits
        self.time_scale = time_scale
        self.job_delay = job_delay
        self.keep_event_properties = keep_event_properties
        #: List properties keep a value appended twice, and lose one occurrence per unappend.
        self.list_duplicates = list_duplicates
        self.seed = seed
        self._lock = threading.RLock()
        self._scheduler = JobScheduler(job_delay, time_scale=time_scale, seed=seed)
        self._endpoint_counts: Counter[str] = Counter()
        self._api_routes = [
            (method, regex, f"{method} {handler._route[1]}")  # type: ignore[attr-defined]
            for method, regex, handler in self._routes
            if handler._route[1].startswith("/api/")  # type: ignore[attr-defined]
        ]
        self._init_state()

    def __repr__(self) -> str:
        return f"KlaviyoEmulator(port={self.port}, rate_limits={self.rate_limits})"

    def _init_state(self) -> None:
        self._ids = IdFactory(self.seed)
        self._profiles = profile_model.ProfileStore(
            self._ids.new, list_duplicates=self.list_duplicates
        )
        self._events = EventLog(keep_properties=self.keep_event_properties)
        self._catalog = catalog_model.Catalog()
        self._segments: list[segment_model.Segment] = []
        self._profile_jobs: dict[str, profile_jobs.ProfileImportJob] = {}
        self._variant_jobs: dict[str, catalog_model.VariantJob] = {}
        self._profiles_in_flight: Counter[str] = Counter()
        self._variants_in_flight: Counter[str] = Counter()
        self._counters: Counter[str] = Counter()
        self._limiters = {
            key: RateLimiter(limit.windows(), time_scale=self.time_scale)
            for key, limit in RATE_LIMITS.items()
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> KlaviyoEmulator:
        super().start()
        return self

    def __enter__(self) -> KlaviyoEmulator:
        return self.start()

    def stop(self) -> None:
        self._scheduler.cancel_all()
        super().stop()

    def reset(self) -> None:
        """Forget all data, jobs, counters, rate-limit windows and faults."""
        self._scheduler.cancel_all()
        with self._lock:
            self._init_state()
        self.faults.clear()
        with self._log_lock:
            self.request_counts.clear()
            self.status_counts.clear()
            self._endpoint_counts.clear()

    # -- seeding and reading state (Python side) -------------------------------------------------

    def add_variants(
        self,
        skus: list[str],
        inventory: float = 0,
        *,
        integration: str = "$custom",
        catalog: str = "$default",
    ) -> list[dict[str, Any]]:
        """Create (or reset) variants ``<integration>:::<catalog>:::<sku>``."""
        with self._lock:
            added = self._catalog.add(
                list(skus), inventory, time.time(), integration=integration, catalog=catalog
            )
            return [variant.snapshot() for variant in added]

    def add_profile(
        self,
        email: str | None = None,
        *,
        suppressed: bool = False,
        phone_number: str | None = None,
        external_id: str | None = None,
        properties: dict[str, Any] | None = None,
        consent: str = "NEVER_SUBSCRIBED",
        suppression_reason: str = "USER_SUPPRESSED",
    ) -> dict[str, Any]:
        """Seed a known profile, for instance one suppressed from email marketing."""
        with self._lock:
            profile = self._profiles.seed(
                time.time(),
                email=email,
                phone_number=phone_number,
                external_id=external_id,
                properties=properties,
                consent=consent,
                suppressed=suppressed,
                suppression_reason=suppression_reason,
            )
            return self._profiles.snapshot(profile)

    def events(self, metric: str | None = None, email: str | None = None) -> list[dict[str, Any]]:
        """Accepted (deduplicated) events, oldest first, optionally for one metric or profile."""
        with self._lock:
            wanted: int | None = None
            if email is not None:
                profile = self._profiles.by_email(email)
                if profile is None:
                    return []
                wanted = profile.index
            found = []
            for row in self._events.rows():
                if metric is not None and row.metric != metric:
                    continue
                if wanted is not None and row.profile_index != wanted:
                    continue
                owner = self._profiles.profiles[row.profile_index]
                found.append(
                    {
                        "profile_id": owner.id,
                        "email": owner.email,
                        "metric": row.metric,
                        "unique_id": row.unique_id,
                        "time": iso(row.time),
                        "value": row.value,
                        "value_currency": row.value_currency,
                        "backfill": row.backfill,
                        "properties": row.properties,
                    }
                )
            return found

    def profile(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._profiles.by_email(email)
            return self._profiles.snapshot(found) if found is not None else None

    def profiles(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._profiles.snapshot(p) for p in self._profiles.profiles]

    def variant(self, variant_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._catalog.variants.get(variant_id)
            return found.snapshot() if found is not None else None

    def variants(self) -> list[dict[str, Any]]:
        with self._lock:
            return [v.snapshot() for v in self._catalog.variants.values()]

    def segments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.snapshot() for s in self._segments]

    def stats(self) -> dict[str, Any]:
        """Counters for tests and benchmarks."""
        with self._log_lock:
            requests = dict(self._endpoint_counts)
            responses = {str(k): v for k, v in sorted(self.status_counts.items())}
            throttled = self.status_counts[429]
        with self._lock:
            counters = self._counters
            stored = len(self._events)
            return {
                "requests": requests,
                "responses": responses,
                "throttled": throttled,
                "rate_limited": counters["rate_limited"],
                "payloads_rejected": counters["payloads_rejected"],
                "events": stored,
                "flow_triggering_events": stored - self._events.backfilled,
                "backfill_events": self._events.backfilled,
                "events_deduplicated": self._events.deduplicated,
                "profiles": len(self._profiles.profiles),
                "profile_jobs": counters["profile_jobs"],
                "profile_jobs_in_flight": sum(
                    1 for job in self._profile_jobs.values() if job.status != "complete"
                ),
                "profile_jobs_overlapping": counters["profile_jobs_overlapping"],
                "profile_job_overlapping_profiles": counters["profile_job_overlapping_profiles"],
                "import_errors": counters["import_errors"],
                "variant_jobs": counters["variant_jobs"],
                "variant_jobs_overlapping": counters["variant_jobs_overlapping"],
                "variant_job_errors": counters["variant_job_errors"],
                "segments": len(self._segments),
            }

    # -- the gate every /api request passes ------------------------------------------------------

    def error_response(self, status: int, code: str, detail: str, **extra: Any) -> Response:
        item = ErrorItem(status, code, detail, pointer=extra.get("pointer"))
        return Response(status, error_document([item]), content_type=JSONAPI)

    def record(self, request: Request, status: int) -> None:
        super().record(request, status)
        if not request.path.startswith("/api/"):
            return
        endpoint = next(
            (
                key
                for method, regex, key in self._api_routes
                if method == request.method and regex.match(request.path)
            ),
            f"{request.method} (unknown)",
        )
        with self._log_lock:
            self._endpoint_counts[endpoint] += 1

    def _serve(
        self,
        request: Request,
        endpoint: str,
        handler: ApiHandler,
        *,
        body: bool = False,
        limit: Callable[[Request], str] | None = None,
    ) -> Response:
        try:
            self._authenticate(request)
            self._check_revision(request)
            wait = self._acquire(limit(request) if limit else endpoint)
            if wait is not None:
                with self._lock:
                    self._counters["rate_limited"] += 1
                return self.throttled(wait)
            if body:
                self._check_body(request)
            return handler(request)
        except ApiError as exc:
            if body and exc.status in (400, 413, 415):
                with self._lock:
                    self._counters["payloads_rejected"] += 1
            return Response(exc.status, exc.document(), content_type=JSONAPI)
        except Exception as exc:  # noqa: BLE001 - an API answers 500, it does not hang up
            detail = f"Emulator error: {type(exc).__name__}."
            return self.error_response(500, "server_error", detail)

    def _authenticate(self, request: Request) -> None:
        header = request.header("authorization")
        if not header:
            detail = "Send your private key as 'Authorization: Klaviyo-API-Key <key>'."
            raise ApiError.one(401, "not_authenticated", detail)
        scheme, _, key = header.partition(" ")
        valid = hmac.compare_digest(key.strip().encode(), self._api_key.encode())
        if scheme != "Klaviyo-API-Key" or not valid:
            detail = "Incorrect API key or authorization scheme (expected Klaviyo-API-Key)."
            raise ApiError.one(401, "authentication_failed", detail)

    def _check_revision(self, request: Request) -> None:
        revision = request.header("revision")
        if revision is None:
            detail = "The 'revision' header is required (format: YYYY-MM-DD[.suffix])."
            raise ApiError.one(400, "invalid", detail, parameter="revision")
        match = _REVISION.match(revision.strip())
        try:
            valid = match is not None and date.fromisoformat(match.group(1)) is not None
        except ValueError:
            valid = False
        if not valid:
            detail = f"Invalid revision {revision[:40]!r}; expected YYYY-MM-DD[.suffix]."
            raise ApiError.one(400, "invalid", detail, parameter="revision")

    def _acquire(self, key: str) -> float | None:
        if not self.rate_limits:
            return None
        return self._limiters[key].acquire(self._api_key)

    def _check_body(self, request: Request) -> None:
        media_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if media_type not in _MEDIA_TYPES:
            shown = media_type[:60] or "none"
            detail = f"Unsupported media type {shown!r}; send application/vnd.api+json."
            raise ApiError.one(415, "unsupported_media_type", detail)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            detail = f"The payload is over {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB."
            raise ApiError.one(413, "payload_too_large", detail)

    def _document(self, status: int, document: dict[str, Any]) -> Response:
        return Response(status, document, content_type=JSONAPI)

    def _not_found(self, what: str) -> ApiError:
        return ApiError.one(404, "not_found", f"{what} was not found.")

    # -- events ----------------------------------------------------------------------------------

    @route("POST", "/api/event-bulk-create-jobs")
    def _bulk_create_events(self, request: Request) -> Response:
        return self._serve(request, "POST /api/event-bulk-create-jobs", self._events_job, body=True)

    def _events_job(self, request: Request) -> Response:
        now = time.time()
        plan = event_jobs.parse(request.body, now, self._profile_key, self._conflicting)
        with self._lock:
            event_jobs.apply(plan, self._profiles, self._events, now)
        return Response(202)

    def _conflicting(self, identity: profile_model.Identity) -> str | None:
        with self._lock:
            return self._profiles.conflicting_identifier(identity)

    def _profile_key(self, identity: profile_model.Identity) -> str | None:
        with self._lock:
            found = self._profiles.find(identity)
        if found is not None:
            return f"profile:{found.index}"
        if identity.id:
            return None
        return identity.index_keys()[0]

    # -- profile import jobs ---------------------------------------------------------------------

    @route("POST", "/api/profile-bulk-import-jobs")
    def _bulk_import_profiles(self, request: Request) -> Response:
        endpoint = "POST /api/profile-bulk-import-jobs"
        return self._serve(request, endpoint, self._start_profile_job, body=True)

    def _start_profile_job(self, request: Request) -> Response:
        now = time.time()
        job = profile_jobs.parse(request.body, self._ids.new(), now)
        with self._lock:
            keys = job.identity_keys()
            for change in job.changes:
                found = self._profiles.find(change.identity)
                if found is not None:
                    keys.add(f"profile:{found.index}")
            overlapping = sum(1 for key in keys if self._profiles_in_flight[key] > 0)
            if overlapping:
                self._counters["profile_jobs_overlapping"] += 1
                self._counters["profile_job_overlapping_profiles"] += overlapping
            self._profiles_in_flight.update(keys)
            self._profile_jobs[job.id] = job
            self._counters["profile_jobs"] += 1
            document = {"data": profile_jobs.resource(job, self.url)}
        self._scheduler.schedule(lambda: self._finish_profile_job(job, keys))
        document["links"] = {"self": document["data"]["links"]["self"]}
        return self._document(202, document)

    def _finish_profile_job(self, job: profile_jobs.ProfileImportJob, keys: set[str]) -> None:
        with self._lock:
            if self._profile_jobs.get(job.id) is not job:
                return  # the emulator was reset meanwhile
            profile_jobs.run(job, self._profiles, time.time())
            self._counters["import_errors"] += len(job.errors)
            _release(self._profiles_in_flight, keys)

    @route("GET", "/api/profile-bulk-import-jobs/{job_id}")
    def _get_profile_job(self, request: Request) -> Response:
        endpoint = "GET /api/profile-bulk-import-jobs/{job_id}"
        return self._serve(request, endpoint, self._profile_job)

    def _profile_job(self, request: Request) -> Response:
        with self._lock:
            job = self._profile_jobs.get(request.params["job_id"])
            if job is None:
                raise self._not_found("The profile bulk import job")
            data = profile_jobs.resource(job, self.url)
        return self._document(200, {"data": data, "links": {"self": data["links"]["self"]}})

    @route("GET", "/api/profile-bulk-import-jobs/{job_id}/import-errors")
    def _get_import_errors(self, request: Request) -> Response:
        endpoint = "GET /api/profile-bulk-import-jobs/{job_id}/import-errors"
        return self._serve(request, endpoint, self._import_errors)

    def _import_errors(self, request: Request) -> Response:
        size = parse_size(request, default=20, maximum=100)
        offset = decode_cursor(request)
        with self._lock:
            job = self._profile_jobs.get(request.params["job_id"])
            if job is None:
                raise self._not_found("The profile bulk import job")
            errors = job.errors if job.status == "complete" else []
            page = [profile_jobs.error_resource(e) for e in errors[offset : offset + size]]
            total = len(errors)
        links = page_links(self.url, request, offset, size, total)
        return self._document(200, {"data": page, "links": links})

    # -- catalog ---------------------------------------------------------------------------------

    @route("POST", "/api/catalog-variant-bulk-update-jobs")
    def _bulk_update_variants(self, request: Request) -> Response:
        endpoint = "POST /api/catalog-variant-bulk-update-jobs"
        return self._serve(request, endpoint, self._start_variant_job, body=True)

    def _start_variant_job(self, request: Request) -> Response:
        job = catalog_model.parse_job(request.body, self._ids.new(), time.time())
        keys = {variant_id for _, variant_id, _ in job.updates}
        with self._lock:
            if any(self._variants_in_flight[key] > 0 for key in keys):
                self._counters["variant_jobs_overlapping"] += 1
            self._variants_in_flight.update(keys)
            self._variant_jobs[job.id] = job
            self._counters["variant_jobs"] += 1
            data = self._catalog.job_resource(job, self.url)
        self._scheduler.schedule(lambda: self._finish_variant_job(job, keys))
        return self._document(202, {"data": data, "links": {"self": data["links"]["self"]}})

    def _finish_variant_job(self, job: catalog_model.VariantJob, keys: set[str]) -> None:
        with self._lock:
            if self._variant_jobs.get(job.id) is not job:
                return
            self._catalog.run(job, time.time())
            self._counters["variant_job_errors"] += len(job.errors)
            _release(self._variants_in_flight, keys)

    @route("GET", "/api/catalog-variant-bulk-update-jobs/{job_id}")
    def _get_variant_job(self, request: Request) -> Response:
        endpoint = "GET /api/catalog-variant-bulk-update-jobs/{job_id}"
        return self._serve(request, endpoint, self._variant_job)

    def _variant_job(self, request: Request) -> Response:
        includes = set((request.arg("include") or "").split(",")) - {""}
        if includes - {"variants"}:
            raise ApiError.bad_parameter("include", "Only 'variants' can be included.")
        fields = sparse_fields(request, "catalog-variant")
        with self._lock:
            job = self._variant_jobs.get(request.params["job_id"])
            if job is None:
                raise self._not_found("The catalog variant bulk update job")
            data = self._catalog.job_resource(job, self.url)
            document: dict[str, Any] = {"data": data, "links": {"self": data["links"]["self"]}}
            if includes:
                document["included"] = [
                    self._catalog.resource(self._catalog.variants[v], self.url, fields)
                    for v in job.variant_ids
                    if v in self._catalog.variants
                ]
        return self._document(200, document)

    @route("GET", "/api/catalog-variants/{variant_id}")
    def _get_variant(self, request: Request) -> Response:
        return self._serve(request, "GET /api/catalog-variants/{variant_id}", self._variant)

    def _variant(self, request: Request) -> Response:
        variant_id = unquote(request.params["variant_id"])
        fields = sparse_fields(request, "catalog-variant")
        with self._lock:
            variant = self._catalog.variants.get(variant_id)
            if variant is None:
                raise self._not_found(f"Catalog variant {variant_id!r}")
            data = self._catalog.resource(variant, self.url, fields)
        return self._document(200, {"data": data, "links": {"self": data["links"]["self"]}})

    @route("GET", "/api/catalog-variants")
    def _get_variants(self, request: Request) -> Response:
        return self._serve(request, "GET /api/catalog-variants", self._variant_page)

    def _variant_page(self, request: Request) -> Response:
        node = _filter(request, catalog_model.VARIANT_FILTERS)
        sort = _sort(request, {"created"})
        size = parse_size(request, default=100, maximum=100)
        offset = decode_cursor(request)
        fields = sparse_fields(request, "catalog-variant")
        with self._lock:
            found = self._catalog.query(node, sort)
            data = [
                self._catalog.resource(v, self.url, fields) for v in found[offset : offset + size]
            ]
        links = page_links(self.url, request, offset, size, len(found))
        return self._document(200, {"data": data, "links": links})

    # -- profiles --------------------------------------------------------------------------------

    @route("GET", "/api/profiles")
    def _get_profiles(self, request: Request) -> Response:
        return self._serve(
            request, "GET /api/profiles", self._profile_page, limit=_profiles_rate_limit
        )

    def _profile_page(self, request: Request) -> Response:
        extra = additional_fields(request, "profile")
        if extra - {"subscriptions", "predictive_analytics"}:
            detail = "additional-fields[profile] takes subscriptions and predictive_analytics."
            raise ApiError.bad_parameter("additional-fields[profile]", detail)
        node = _filter(request, profile_model.PROFILE_FILTERS)
        sort = _sort(request, profile_model.PROFILE_SORTS)
        size = parse_size(request, default=20, maximum=100)
        offset = decode_cursor(request)
        fields = sparse_fields(request, "profile")
        with self._lock:
            found = self._profiles.query(node, sort)
            data = []
            for profile in found[offset : offset + size]:
                item = self._profiles.resource(
                    profile, self.url, subscriptions="subscriptions" in extra, fields=fields
                )
                if "predictive_analytics" in extra:
                    item["attributes"]["predictive_analytics"] = {}
                data.append(item)
        links = page_links(self.url, request, offset, size, len(found))
        return self._document(200, {"data": data, "links": links})

    # -- segments --------------------------------------------------------------------------------

    @route("POST", "/api/segments")
    def _create_segment(self, request: Request) -> Response:
        return self._serve(request, "POST /api/segments", self._new_segment, body=True)

    def _new_segment(self, request: Request) -> Response:
        segment = segment_model.parse(request.body, self._ids.new(), time.time())
        with self._lock:
            self._segments.append(segment)
        data = segment_model.resource(segment, self.url, processing=True)
        return self._document(201, {"data": data, "links": {"self": data["links"]["self"]}})

    @route("GET", "/api/segments")
    def _get_segments(self, request: Request) -> Response:
        return self._serve(request, "GET /api/segments", self._segment_page)

    def _segment_page(self, request: Request) -> Response:
        node = _filter(request, segment_model.SEGMENT_FILTERS)
        sort = _sort(request, segment_model.SEGMENT_SORTS)
        size = parse_size(request, default=10, maximum=10)
        offset = decode_cursor(request)
        fields = sparse_fields(request, "segment")
        definition = "definition" in additional_fields(request, "segment") or (
            fields is not None and "definition" in fields
        )
        with self._lock:
            found = segment_model.query(self._segments, node, sort)
            data = [
                segment_model.resource(
                    s,
                    self.url,
                    processing=self._processing(s),
                    with_definition=definition,
                    fields=fields,
                )
                for s in found[offset : offset + size]
            ]
        links = page_links(self.url, request, offset, size, len(found))
        return self._document(200, {"data": data, "links": links})

    @route("GET", "/api/segments/{segment_id}")
    def _get_segment(self, request: Request) -> Response:
        return self._serve(request, "GET /api/segments/{segment_id}", self._segment)

    def _segment(self, request: Request) -> Response:
        with self._lock:
            found = [s for s in self._segments if s.id == request.params["segment_id"]]
            if not found:
                raise self._not_found("The segment")
            data = segment_model.resource(found[0], self.url, processing=self._processing(found[0]))
        return self._document(200, {"data": data, "links": {"self": data["links"]["self"]}})

    def _processing(self, segment: segment_model.Segment) -> bool:
        return time.time() - segment.created < self._scheduler.delay

    # -- control endpoints for other processes ---------------------------------------------------

    @route("GET", CONTROL_PREFIX + "/events")
    def _control_events(self, request: Request) -> Response:
        # Blank parameters (``?metric=&email=``) mean "any", as a form would send them.
        events = self.events(request.arg("metric") or None, request.arg("email") or None)
        return Response(200, {"events": events})

    @route("GET", CONTROL_PREFIX + "/profiles")
    def _control_profiles(self, request: Request) -> Response:
        return Response(200, {"profiles": self.profiles()})

    @route("POST", CONTROL_PREFIX + "/profiles")
    def _control_add_profile(self, request: Request) -> Response:
        try:
            spec = request.json()
            profile = self.add_profile(**spec)
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": str(exc)})
        return Response(201, {"profile": profile})

    @route("GET", CONTROL_PREFIX + "/variants")
    def _control_variants(self, request: Request) -> Response:
        return Response(200, {"variants": self.variants()})

    @route("POST", CONTROL_PREFIX + "/variants")
    def _control_add_variants(self, request: Request) -> Response:
        try:
            spec = request.json()
            skus = spec.pop("skus")
            if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
                msg = "skus must be a list of strings"
                raise TypeError(msg)
            variants = self.add_variants(skus, **spec)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return Response(400, {"error": f"expected {{'skus': [...], 'inventory': 0}}: {exc}"})
        return Response(201, {"variants": variants})

    @route("GET", CONTROL_PREFIX + "/segments")
    def _control_segments(self, request: Request) -> Response:
        return Response(200, {"segments": self.segments()})

    @route("GET", CONTROL_PREFIX + "/stats")
    def _control_stats(self, request: Request) -> Response:
        return Response(200, self.stats())

    @route("POST", CONTROL_PREFIX + "/reset")
    def _control_reset(self, request: Request) -> Response:
        self.reset()
        return Response(204)


def _release(in_flight: Counter[str], keys: set[str]) -> None:
    for key in keys:
        in_flight[key] -= 1
        if in_flight[key] <= 0:
            del in_flight[key]


def _profiles_rate_limit(request: Request) -> str:
    if "predictive_analytics" in additional_fields(request, "profile"):
        return PROFILES_WITH_PREDICTIVE_ANALYTICS
    return "GET /api/profiles"


def _filter(request: Request, allowed: dict[str, set[str]]) -> filters.Node | None:
    text = request.arg("filter")
    return filters.parse(text, allowed) if text else None


def _sort(request: Request, allowed: set[str]) -> str | None:
    sort = request.arg("sort")
    if sort is None:
        return None
    if sort.lstrip("-") not in allowed:
        options = ", ".join(sorted(allowed))
        raise ApiError.bad_parameter("sort", f"Cannot sort by {sort!r}; sort by one of: {options}.")
    return sort
