"""The event schema: stable ids, JSON round trip, and one clear line for each way an event can be wrong."""

import json

import pytest

from app.events.schema import APPEARED, LEFT, UNKNOWN_APPEARED, Event, EventError, new_run_id, stream_name

JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


def make(type=APPEARED, **kw):
    base = dict(type=type, run="r1", stream="0", track=7, known=True, name="Obama", person_id="p-1",
                similarity=0.61, box=[10.0, 20.0, 110.0, 140.0], frame=42, captured_at=1000.5, first_seen=999.0,
                crop_jpeg=JPEG)
    base.update(kw)
    return Event(**base)


def test_json_round_trip_keeps_every_field_and_the_id():
    e = make(LEFT, last_seen=1003.0, duration=4.0, best_similarity=0.7, frame_jpeg=JPEG)
    data = json.loads(e.to_json())
    assert data["id"] == e.id and data["schema"] == 1 and data["type"] == LEFT
    back = Event.from_json(e.to_json())
    assert back == e and back.crop_jpeg == JPEG and back.frame_jpeg == JPEG


def test_id_depends_only_on_the_dedup_key():
    assert make().id == make(similarity=0.9, frame=99).id  # the same event sent again: same id
    assert make().id != make(track=8).id != make(type=UNKNOWN_APPEARED, known=False, name=None, person_id=None).id
    assert make().id != make(run="r2").id  # track ids restart with each run


def test_every_event_has_the_same_keys():
    a = make().to_dict()
    u = make(UNKNOWN_APPEARED, known=False, name=None, person_id=None, nearest={"person_id": "p-1", "name": "O"})
    assert list(a) == list(u.to_dict())


@pytest.mark.parametrize("change,expect", [
    (dict(type="person.waved"), "event type 'person.waved' is not one of"),
    (dict(stream="cam/1"), "cannot be an MQTT topic level"),
    (dict(track=-1), "track -1 must be a whole number"),
    (dict(box=[1, 2, 3]), "box [1, 2, 3] must be four finite numbers"),
    (dict(captured_at=float("nan")), "captured_at must be a finite time"),
    (dict(name=None), "needs both name and person_id"),
    (dict(known=False), "must not carry a name"),
    (dict(similarity=1.5), "similarity=1.5 must be a cosine similarity"),
    (dict(crop_jpeg=b"PNG"), "crop_jpeg is not JPEG data"),
    (dict(type=LEFT), "needs last_seen and duration"),
])
def test_bad_event_is_one_clear_line(change, expect):
    with pytest.raises(EventError) as info:
        make(**change)
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_from_dict_names_what_is_missing_or_forged():
    d = make().to_dict()
    del d["track"]
    with pytest.raises(EventError, match="event lacks track"):
        Event.from_dict(d)
    d = make().to_dict()
    d["id"] = "not-the-id"
    with pytest.raises(EventError, match="does not match"):
        Event.from_dict(d)
    with pytest.raises(EventError, match="not valid JSON"):
        Event.from_json(b"{")


def test_run_ids_differ_and_stream_indexes_are_names():
    assert new_run_id() != new_run_id()
    assert stream_name(3) == "3"
