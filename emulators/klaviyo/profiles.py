"""Profiles: identity matching, updates with ``patch_properties``, and their JSON:API shape.

Event bulk jobs and profile import jobs both create or update profiles, so both go through
:meth:`ProfileStore.upsert`. A profile is found by its Klaviyo id, else by email (compared
case-insensitively), else phone number, else external id (then the anonymous ids). Nulls never
clear anything: bulk imports cannot clear a property with ``null``; ``meta.patch_properties.unset``
is the way, and is applied here along with ``append`` and ``unappend``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulators.klaviyo import filters
from emulators.klaviyo.jsonapi import ApiError, iso, only

# Plain attributes a profile carries besides its identifiers, location and properties.
PLAIN_ATTRIBUTES = ("first_name", "last_name", "organization", "locale", "title", "image")
SUPPRESSION_REASONS = {
    "HARD_BOUNCE",
    "INVALID_EMAIL",
    "SPAM_COMPLAINT",
    "UNSUBSCRIBE",
    "USER_SUPPRESSED",
}

# get_profiles.json's filter allow-list.
PROFILE_FILTERS: dict[str, set[str]] = {
    "id": {"any", "equals"},
    "email": {"any", "equals"},
    "phone_number": {"any", "equals"},
    "external_id": {"any", "equals"},
    "_kx": {"equals"},
    "created": {"greater-than", "less-than"},
    "updated": {"greater-than", "less-than"},
    "subscriptions.email.marketing.list_suppressions.reason": {"equals"},
    "subscriptions.email.marketing.list_suppressions.timestamp": {
        "greater-or-equal",
        "greater-than",
        "less-or-equal",
        "less-than",
    },
    "subscriptions.email.marketing.list_suppressions.list_id": {"equals"},
    "subscriptions.email.marketing.suppression.reason": {"equals"},
    "subscriptions.email.marketing.suppression.timestamp": {
        "greater-or-equal",
        "greater-than",
        "less-or-equal",
        "less-than",
    },
}
PROFILE_SORTS = {"created", "email", "id", "updated"}


@dataclass(frozen=True, slots=True)
class Identity:
    """The identifiers a request gives for one profile."""

    id: str | None = None
    email: str | None = None
    phone_number: str | None = None
    external_id: str | None = None
    anonymous_id: str | None = None
    kx: str | None = None

    def index_keys(self) -> list[str]:
        """Index keys in matching priority (the Klaviyo id is looked up separately)."""
        keys = []
        if self.email:
            keys.append("email:" + self.email.lower())
        if self.phone_number:
            keys.append("phone:" + self.phone_number)
        if self.external_id:
            keys.append("external:" + self.external_id)
        if self.anonymous_id:
            keys.append("anonymous:" + self.anonymous_id)
        if self.kx:
            keys.append("kx:" + self.kx)
        return keys

    def is_empty(self) -> bool:
        return not (self.id or self.index_keys())


@dataclass(slots=True)
class PropertyPatch:
    """``meta.patch_properties``: list-valued property edits and removals."""

    append: dict[str, Any] | None = None
    unappend: dict[str, Any] | None = None
    unset: list[str] = field(default_factory=list)

    @classmethod
    def from_model(cls, meta: Any, where: str) -> PropertyPatch | None:
        """Read the SDK model's ``meta``; ``where`` is the pointer of that ``meta``.

        The SDK types ``unset`` as Any while the spec says string or list of strings: check it.
        """
        patch = getattr(meta, "patch_properties", None) if meta is not None else None
        if patch is None:
            return None
        unset = patch.unset
        if isinstance(unset, str):
            keys = [unset]
        elif isinstance(unset, list) and all(isinstance(k, str) for k in unset):
            keys = list(unset)
        elif unset is None:
            keys = []
        else:
            detail = "unset must be a property name or a list of property names."
            raise ApiError.invalid(detail, where + "/patch_properties/unset")
        return cls(patch.append, patch.unappend, keys)

    def apply(self, properties: dict[str, Any], *, keep_duplicates: bool = False) -> None:
        """Apply the patch; ``keep_duplicates`` is the pessimistic reading of Klaviyo's docs.

        Klaviyo does not document whether ``append`` skips a value already present, nor whether
        ``unappend`` removes every occurrence: with ``keep_duplicates`` an append always adds
        and an unappend removes one occurrence, so a client that appends twice is seen to.
        """
        for key, value in (self.append or {}).items():
            items = _as_list(properties.get(key))
            for item in _as_list(value):
                if keep_duplicates or item not in items:
                    items.append(item)
            properties[key] = items
        for key, value in (self.unappend or {}).items():
            if key in properties:
                properties[key] = _unappended(
                    _as_list(properties[key]), _as_list(value), keep_duplicates=keep_duplicates
                )
        for key in self.unset:
            properties.pop(key, None)


def _unappended(items: list[Any], removed: list[Any], *, keep_duplicates: bool) -> list[Any]:
    if not keep_duplicates:
        return [i for i in items if i not in removed]
    kept = list(items)
    for value in removed:
        if value in kept:
            kept.remove(value)  # one occurrence
    return kept


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@dataclass(slots=True)
class ProfileChange:
    """What one request item asks to apply to one profile."""

    identity: Identity
    attributes: dict[str, Any]
    location: dict[str, Any] | None
    properties: dict[str, Any] | None
    patch: PropertyPatch | None

    @classmethod
    def from_model(cls, resource: Any, where: str) -> ProfileChange:
        """From an SDK profile resource (``type``/``id``/``attributes``/``meta``) at ``where``."""
        attributes = resource.attributes
        identity = Identity(
            id=resource.id,
            email=attributes.email,
            phone_number=attributes.phone_number,
            external_id=attributes.external_id,
            anonymous_id=getattr(attributes, "anonymous_id", None),
            kx=attributes.kx,
        )
        plain = {}
        for name in PLAIN_ATTRIBUTES:
            value = getattr(attributes, name)
            if value is not None:
                plain[name] = value
        location = None
        if attributes.location is not None:
            location = {k: v for k, v in vars(attributes.location).items() if v is not None}
        return cls(
            identity=identity,
            attributes=plain,
            location=location,
            properties=attributes.properties,
            patch=PropertyPatch.from_model(resource.meta, where + "/meta"),
        )


@dataclass(slots=True)
class Profile:
    """A stored profile; ``index`` is its position, used as a compact key by the event log."""

    index: int
    id: str
    created: float
    updated: float
    email: str | None = None
    phone_number: str | None = None
    external_id: str | None = None
    anonymous_id: str | None = None
    kx: str | None = None
    attributes: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    last_event_date: float | None = None
    consent: str = "NEVER_SUBSCRIBED"
    consent_timestamp: float | None = None
    suppression: list[tuple[str, float]] | None = None


class ProfileStore:
    """All profiles, indexed by id and by each identifier. Not thread-safe: the caller locks."""

    def __init__(self, new_id: Callable[[], str], *, list_duplicates: bool = False) -> None:
        self._new_id = new_id
        #: ``append`` keeps duplicates and ``unappend`` removes one (see PropertyPatch.apply).
        self.list_duplicates = list_duplicates
        self.profiles: list[Profile] = []
        self.by_id: dict[str, Profile] = {}
        self._index: dict[str, Profile] = {}

    def find(self, identity: Identity) -> Profile | None:
        if identity.id:
            return self.by_id.get(identity.id)
        for key in identity.index_keys():
            profile = self._index.get(key)
            if profile is not None:
                return profile
        return None

    def conflicting_identifier(self, identity: Identity) -> str | None:
        """The identifier of ``identity`` another profile than the matched one holds, if any.

        Klaviyo answers such a request with ``duplicate_profile`` (409 for a single profile or
        an event request, an import error in a bulk import): an email names one profile, the
        phone number another, and Klaviyo will not merge them.
        """
        profile = self.find(identity)
        if profile is None:
            return None
        pairs = (
            ("phone_number", "phone:" + (identity.phone_number or "")),
            ("external_id", "external:" + (identity.external_id or "")),
        )
        for name, key in pairs:
            holder = self._index.get(key) if getattr(identity, name) else None
            if holder is not None and holder is not profile:
                return name
        return None

    def by_email(self, email: str) -> Profile | None:
        return self._index.get("email:" + email.lower())

    def upsert(self, change: ProfileChange, now: float) -> Profile:
        profile = self.find(change.identity)
        if profile is None:
            profile = Profile(len(self.profiles), self._new_id(), now, now)
            self.profiles.append(profile)
            self.by_id[profile.id] = profile
        self._set_identifiers(profile, change.identity)
        if change.attributes:
            if profile.attributes is None:
                profile.attributes = {}
            profile.attributes.update(change.attributes)
        if change.location:
            if profile.location is None:
                profile.location = {}
            profile.location.update(change.location)
        if change.properties or change.patch is not None:
            if profile.properties is None:
                profile.properties = {}
            if change.properties:
                properties = profile.properties
                for key, value in change.properties.items():
                    if value is not None:
                        properties[key] = value
            if change.patch is not None:
                change.patch.apply(profile.properties, keep_duplicates=self.list_duplicates)
        profile.updated = now
        return profile

    def _set_identifiers(self, profile: Profile, identity: Identity) -> None:
        """Give the profile the identifiers it lacks, unless another profile holds them."""
        pairs = (
            ("email", "email:", (identity.email or "").lower(), identity.email),
            ("phone_number", "phone:", identity.phone_number, identity.phone_number),
            ("external_id", "external:", identity.external_id, identity.external_id),
            ("anonymous_id", "anonymous:", identity.anonymous_id, identity.anonymous_id),
            ("kx", "kx:", identity.kx, identity.kx),
        )
        for attribute, prefix, key, value in pairs:
            if not value or not key:
                continue
            holder = self._index.get(prefix + key)
            if holder is not None and holder is not profile:
                continue
            old = getattr(profile, attribute)
            old_key = old.lower() if old is not None and attribute == "email" else old
            if old_key == key:
                continue  # same identifier, maybe in another case: keep it as first written
            if old_key is not None:
                self._index.pop(prefix + old_key, None)
            setattr(profile, attribute, value)
            self._index[prefix + key] = profile

    def seed(
        self,
        now: float,
        *,
        email: str | None = None,
        phone_number: str | None = None,
        external_id: str | None = None,
        properties: dict[str, Any] | None = None,
        consent: str = "NEVER_SUBSCRIBED",
        suppressed: bool = False,
        suppression_reason: str = "USER_SUPPRESSED",
    ) -> Profile:
        identity = Identity(email=email, phone_number=phone_number, external_id=external_id)
        if identity.is_empty():
            msg = "a profile needs an email, phone number or external id"
            raise ValueError(msg)
        if suppression_reason not in SUPPRESSION_REASONS:
            msg = f"suppression_reason must be one of {sorted(SUPPRESSION_REASONS)}"
            raise ValueError(msg)
        profile = self.upsert(ProfileChange(identity, {}, None, properties, None), now)
        profile.consent = consent
        profile.consent_timestamp = now if consent != "NEVER_SUBSCRIBED" else None
        if consent == "UNSUBSCRIBED" and not suppressed:
            suppressed, suppression_reason = True, "UNSUBSCRIBE"
        profile.suppression = [(suppression_reason, now)] if suppressed else None
        return profile

    # -- reading ---------------------------------------------------------------------------------

    def query(self, node: filters.Node | None, sort: str | None) -> list[Profile]:
        if node is None:
            found = list(self.profiles)
        else:
            node = _lowercase_emails(node)
            lookup = filters.lookup_values(node, {"id", "email", "phone_number", "external_id"})
            if lookup is not None:
                found = self._lookup(*lookup)
            else:
                found = [p for p in self.profiles if filters.matches(node, _values_of(p))]
        if sort:
            name = sort.lstrip("-")
            found.sort(key=lambda p: _sort_key(p, name), reverse=sort.startswith("-"))
        return found

    def _lookup(self, field_name: str, values: list[Any]) -> list[Profile]:
        prefix = {"email": "email:", "phone_number": "phone:", "external_id": "external:"}
        hits: dict[int, Profile] = {}
        for value in values:
            if not isinstance(value, str):
                continue
            if field_name == "id":
                profile = self.by_id.get(value)
            else:
                profile = self._index.get(prefix[field_name] + value)
            if profile is not None:
                hits[profile.index] = profile
        return [hits[i] for i in sorted(hits)]

    def snapshot(self, profile: Profile) -> dict[str, Any]:
        """A flat view for tests and the demo (not an API shape)."""
        return {
            "id": profile.id,
            "email": profile.email,
            "phone_number": profile.phone_number,
            "external_id": profile.external_id,
            **(profile.attributes or {}),
            "location": dict(profile.location or {}),
            "properties": dict(profile.properties or {}),
            "created": iso(profile.created),
            "updated": iso(profile.updated),
            "last_event_date": iso(profile.last_event_date),
            "consent": profile.consent,
            "suppressed": bool(profile.suppression),
        }

    def resource(
        self,
        profile: Profile,
        base_url: str,
        *,
        subscriptions: bool = False,
        fields: set[str] | None = None,
    ) -> dict[str, Any]:
        extra = profile.attributes or {}
        attributes: dict[str, Any] = {
            "email": profile.email,
            "phone_number": profile.phone_number,
            "external_id": profile.external_id,
            **{name: extra.get(name) for name in PLAIN_ATTRIBUTES},
            "created": iso(profile.created),
            "updated": iso(profile.updated),
            "last_event_date": iso(profile.last_event_date),
            "location": dict(profile.location or {}),
            "properties": dict(profile.properties or {}),
        }
        attributes = only(attributes, fields)
        if subscriptions:
            attributes["subscriptions"] = _subscriptions(profile)
        return {
            "type": "profile",
            "id": profile.id,
            "attributes": attributes,
            "links": {"self": f"{base_url}/api/profiles/{profile.id}/"},
        }


def _subscriptions(profile: Profile) -> dict[str, Any]:
    """The ``subscriptions`` additional field: email marketing consent and suppression."""
    suppression = [
        {"reason": reason, "timestamp": iso(moment)} for reason, moment in profile.suppression or []
    ]
    last_updated = iso(profile.consent_timestamp or profile.created)
    return {
        "email": {
            "marketing": {
                "can_receive_email_marketing": bool(profile.email) and not suppression,
                "consent": profile.consent,
                "consent_timestamp": iso(profile.consent_timestamp),
                "last_updated": last_updated,
                "method": None,
                "method_detail": "",
                "custom_method_detail": None,
                "double_optin": None,
                "suppression": suppression,
                "list_suppressions": [],
            }
        },
        "sms": {
            "marketing": {
                "can_receive_sms_marketing": False,
                "consent": "NEVER_SUBSCRIBED",
                "consent_timestamp": None,
                "method": None,
                "method_detail": "",
                "last_updated": None,
            }
        },
    }


def _lowercase_emails(node: filters.Node) -> filters.Node:
    if isinstance(node, filters.Logical):
        return filters.Logical(node.operator, tuple(_lowercase_emails(n) for n in node.operands))
    if node.field != "email":
        return node
    value = node.value
    if isinstance(value, list):
        value = [v.lower() if isinstance(v, str) else v for v in value]
    elif isinstance(value, str):
        value = value.lower()
    return filters.Condition(node.operator, node.field, value)


def _values_of(profile: Profile) -> Callable[[str], Any]:
    def value_of(name: str) -> Any:
        if name == "email":
            return profile.email.lower() if profile.email else None
        if name == "_kx":
            return profile.kx
        if name in ("id", "phone_number", "external_id", "created", "updated"):
            return getattr(profile, name)
        if name == "subscriptions.email.marketing.suppression.reason":
            return profile.suppression[0][0] if profile.suppression else None
        if name == "subscriptions.email.marketing.suppression.timestamp":
            return profile.suppression[0][1] if profile.suppression else None
        return None  # list suppressions: the emulator keeps no lists

    return value_of


def _sort_key(profile: Profile, name: str) -> tuple[bool, Any]:
    value = getattr(profile, name)
    if isinstance(value, str):
        value = value.lower()
    return (value is None, value if value is not None else "")
