"""Bulk profile import jobs: accepted whole or rejected (400), then applied asynchronously.

Schema, size and count problems reject the request. A profile whose email or phone number is
invalid (or that has no identifier) does not: it becomes an import error of the job, readable at
``/api/profile-bulk-import-jobs/{id}/import-errors`` once the job completed, as in Klaviyo.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from openapi_client.models.profile_import_job_create_query import ProfileImportJobCreateQuery

from emulators.klaviyo import payload
from emulators.klaviyo.event_jobs import identity_problem
from emulators.klaviyo.jsonapi import ApiError, iso
from emulators.klaviyo.limits import MAX_PROFILE_BYTES, MAX_PROFILES_PER_IMPORT
from emulators.klaviyo.profiles import ProfileChange, ProfileStore

PROFILES = "/data/attributes/profiles/data"
JOB_TYPE = "profile-bulk-import-job"
EXPIRY_SECONDS = 7 * 86_400


@dataclass
class ProfileImportJob:
    """An import job: the changes to apply, the errors found up front, then its outcome."""

    id: str
    created: float
    total: int
    changes: list[ProfileChange]
    errors: list[dict[str, Any]]
    list_ids: list[str]
    status: str = "queued"
    started: float | None = None
    completed: float | None = None
    completed_count: int = 0
    failed_count: int = 0
    profile_ids: list[str] = field(default_factory=list)

    def identity_keys(self) -> set[str]:
        """What names each profile of the job, to spot jobs in flight for the same profile."""
        keys: set[str] = set()
        for change in self.changes:
            identity = change.identity
            keys.update(identity.index_keys())
            if identity.id:
                keys.add("id:" + identity.id)
        return keys


def parse(raw: bytes, job_id: str, now: float) -> ProfileImportJob:
    query = payload.load(ProfileImportJobCreateQuery, raw)
    profiles = query.data.attributes.profiles.data
    if len(profiles) > MAX_PROFILES_PER_IMPORT:
        count = len(profiles)
        detail = f"At most {MAX_PROFILES_PER_IMPORT} profiles per job; this one has {count}."
        raise ApiError.invalid(detail, PROFILES)
    body: Any = None
    if len(raw) > MAX_PROFILE_BYTES:
        body = payload.document(raw)
        for i, item in enumerate(body["data"]["attributes"]["profiles"]["data"]):
            size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
            if size > MAX_PROFILE_BYTES:
                detail = f"A profile cannot be larger than {MAX_PROFILE_BYTES // 1024} KB."
                raise ApiError.invalid(detail, f"{PROFILES}/{i}")
    changes: list[ProfileChange] = []
    errors: list[dict[str, Any]] = []
    for i, resource in enumerate(profiles):
        where = f"{PROFILES}/{i}"
        change = ProfileChange.from_model(resource, where)
        problem = identity_problem(change.identity, where)
        if problem is None:
            changes.append(change)
            continue
        if body is None:
            body = payload.document(raw)
        detail, pointer = problem
        errors.append(
            {
                "id": str(uuid.uuid4()),
                "code": "invalid",
                "title": "Invalid input.",
                "detail": detail,
                "source": {"pointer": pointer},
                "original_payload": body["data"]["attributes"]["profiles"]["data"][i],
            }
        )
    relationships = query.data.relationships
    lists = relationships.lists.data if relationships and relationships.lists else None
    return ProfileImportJob(
        id=job_id,
        created=now,
        total=len(profiles),
        changes=changes,
        errors=errors,
        list_ids=[item.id for item in lists or []],
    )


def run(job: ProfileImportJob, profiles: ProfileStore, now: float) -> None:
    """Apply the job. The caller holds the emulator's lock."""
    job.status = "processing"
    job.started = now
    for change in job.changes:
        if change.identity.id and profiles.find(change.identity) is None:
            job.errors.append(
                {
                    "id": str(uuid.uuid4()),
                    "code": "not_found",
                    "title": "Not found.",
                    "detail": f"No profile has the id {change.identity.id!r}.",
                    "source": {"pointer": PROFILES},
                    "original_payload": None,
                }
            )
            continue
        conflict = profiles.conflicting_identifier(change.identity)
        if conflict is not None:
            job.errors.append(duplicate_profile_error(change, conflict))
            continue
        job.profile_ids.append(profiles.upsert(change, now).id)
    job.completed_count = len(job.profile_ids)
    job.failed_count = len(job.errors)
    job.status = "complete"
    job.completed = now


def duplicate_profile_error(change: ProfileChange, identifier: str) -> dict[str, Any]:
    """The import error Klaviyo gives a profile whose identifier another profile holds."""
    identity = {
        "email": change.identity.email,
        "phone_number": change.identity.phone_number,
        "external_id": change.identity.external_id,
    }
    return {
        "id": str(uuid.uuid4()),
        "code": "duplicate_profile",
        "title": "Conflict.",
        "detail": f"A profile already exists with this {identifier}.",
        "source": {"pointer": f"{PROFILES}/attributes/{identifier}"},
        "original_payload": {
            "type": "profile",
            "attributes": {k: v for k, v in identity.items() if v is not None},
        },
    }


def resource(job: ProfileImportJob, base_url: str) -> dict[str, Any]:
    url = f"{base_url}/api/profile-bulk-import-jobs/{job.id}/"
    return {
        "type": JOB_TYPE,
        "id": job.id,
        "attributes": {
            "status": job.status,
            "created_at": iso(job.created, micro=True),
            "total_count": job.total,
            "completed_count": job.completed_count,
            "failed_count": job.failed_count,
            "completed_at": iso(job.completed, micro=True),
            "expires_at": iso(job.created + EXPIRY_SECONDS, micro=True),
            "started_at": iso(job.started, micro=True),
        },
        "relationships": {
            "lists": {
                "data": [{"type": "list", "id": list_id} for list_id in job.list_ids],
                "links": {"self": url + "relationships/lists/", "related": url + "lists/"},
            },
            "profiles": {
                "links": {"self": url + "relationships/profiles/", "related": url + "profiles/"},
            },
            "import-errors": {"links": {"related": url + "import-errors/"}},
        },
        "links": {"self": url},
    }


def error_resource(error: dict[str, Any]) -> dict[str, Any]:
    attributes = {k: v for k, v in error.items() if k != "id"}
    return {"type": "import-error", "id": error["id"], "attributes": attributes}
