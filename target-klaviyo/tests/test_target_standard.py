"""singer-sdk's standard target tests, those that can apply to a target with fixed input streams.

target-klaviyo accepts only its four contract streams and refuses any other stream by name
(``get_sink_class`` raises). The SDK's file-based tests feed streams of their own
(``test_array_data``, ``test_camelcase``...), so with this target they can only fail on the
stream name, or pass for that wrong reason where they expect an error:

- array_data, camelcase, camelcase_complex_schema, duplicate_records, encoded_string_data,
  multiple_state_messages, no_primary_keys, optional_attributes,
  record_missing_required_property, schema_no_properties, schema_updates, pk_updates,
  special_chars_in_attributes, record_missing_fields: unknown streams, refused by design.
- invalid_schema and record_missing_key_property: expect an exception, and would get the
  unknown-stream error instead, a pass that tests nothing.

What those tests mean for this target (state relayed once records are in, duplicates, missing
fields, invalid records not stopping the run) is tested on its own streams in this folder.
One standard test applies as it is: printing version and about information. The SDK's
record-before-schema test expects the run to stop; this target sets such a record aside as
``unreadable_record`` and goes on (one bad line must not stop every run): see
``test_bad_input.py``.
"""

from __future__ import annotations

from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import TargetCliPrintsTest

from target_klaviyo.target import TargetKlaviyo

applicable = SingerTestSuite(kind="target", tests=[TargetCliPrintsTest])

# Neither test reaches Klaviyo: a closed port and an in-memory ledger are enough.
StandardTargetTests = get_target_test_class(
    TargetKlaviyo,
    config={
        "api_key": "pk_standard_tests",
        "api_url": "http://127.0.0.1:9",
        "ledger_url": "sqlite://",
    },
    include_target_tests=False,
    custom_suites=[applicable],
)


class TestTargetKlaviyoStandard(StandardTargetTests):  # type: ignore[misc,valid-type]
    """The SDK's standard tests that apply to target-klaviyo."""
