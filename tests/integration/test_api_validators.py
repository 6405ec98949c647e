# SPDX-License-Identifier: Apache-2.0
"""Issue 9 defect 5 through the real daemon: one bad ETag from the Platform API
stopped polling until a restart (a control byte made every later request fail
locally; a 90 KB one made the API answer 431 forever). The daemon must never
remember an invalid validator: each later fetch is a plain or date-conditional
GET that succeeds."""
import json
import time

from vmenv import vm_env, DOC_PATH  # noqa: F401
import simlib


def set_validators(env, **values):
    st, _, body = simlib.http_request(env.api.url, "POST", "/_sim/validators", json.dumps(values).encode())
    assert st == 200, body


def serve_again(env, bump):
    """The same document, answered 200 (a later Last-Modified) so its headers are seen."""
    env.api.set_doc(simlib.http_request(env.api.url, "GET", "/_sim/doc")[2],
                    last_modified=int(time.time()) + bump)


def doc_requests_since(env, seq):
    return [r for r in env.api.requests(DOC_PATH) if r["seq"] > seq]


def check_polling_goes_on(env, bump):
    vm = env.the_vm()
    seq = max([r["seq"] for r in env.api.requests()] or [0])
    serve_again(env, bump)
    for _ in range(3):
        r = env.update()
        assert r.ok, r
    reqs = doc_requests_since(env, seq)
    assert len(reqs) == 3, reqs
    assert [q["status"] for q in reqs] == [200, 304, 304], [q["status"] for q in reqs]
    # the bad ETag was never sent back; the good Last-Modified was
    for q in reqs[1:]:
        assert "If-None-Match" not in q["headers"] and "If-Modified-Since" in q["headers"], q["headers"]
    now = env.the_vm()
    assert (now["id"], now["status"]) == (vm["id"], "running")
    assert env.get("State") == "running"


def test_control_byte_etag_does_not_stop_polling(vm_env):
    env = vm_env()
    set_validators(env, etag='"a\x01b"')
    check_polling_goes_on(env, 100)


def test_90k_etag_does_not_stop_polling(vm_env):
    env = vm_env()
    set_validators(env, etag='"' + "x" * (90 * 1024) + '"')
    check_polling_goes_on(env, 200)
