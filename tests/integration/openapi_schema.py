#!/usr/bin/python3
"""Validates katad's HTTP responses against api/openapi.yaml.

    from openapi_schema import load_spec, validate_response
    spec = load_spec("api/openapi.yaml")
    validate_response(spec, "GET", "/v1/sandboxes/{sid}", 200, body)

`validate_response` finds the operation's response for the status (exact code, then `2XX`-style
ranges, then `default`), resolves `#/components/...` references, converts the OpenAPI 3.0 schema to
JSON Schema (draft 4, which OpenAPI 3.0 follows; `nullable` becomes a `null` type) and validates the
body, raising AssertionError with every mismatch on failure. `date-time` strings are checked as
RFC 3339; other formats are not checked.

Only python3-yaml and python3-jsonschema (Debian 12: 4.10) are needed. Run this file to self-test:
    /usr/bin/python3 tests/integration/openapi_schema.py [api/openapi.yaml]
"""

import copy
import json
import os
import re
import sys

import jsonschema
import yaml

__all__ = ["load_spec", "validate_response", "validate_schema", "find_operation"]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
JSON_TYPES = ("application/json",)

# Keywords of the OpenAPI Schema Object that JSON Schema does not know (or that mean something else).
_OPENAPI_ONLY = ("nullable", "discriminator", "example", "xml", "externalDocs", "deprecated",
                 "readOnly", "writeOnly")

_RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$")

_format_checker = jsonschema.FormatChecker(formats=())


@_format_checker.checks("date-time")
def _is_date_time(value):
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def load_spec(path):
    """Loads an OpenAPI document (YAML or JSON) into a dict."""
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or "paths" not in spec:
        raise ValueError(f"{path}: not an OpenAPI document (no 'paths')")
    return spec


# --------------------------------------------------------------------------- schema conversion

def _to_json_schema(node):
    """OpenAPI 3.0 Schema Object → JSON Schema draft 4 (recursively; $refs are kept)."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": node["$ref"]}  # OpenAPI 3.0 ignores siblings of $ref
    out = {}
    for key, value in node.items():
        if key in _OPENAPI_ONLY:
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _to_json_schema(value)
        else:
            out[key] = copy.deepcopy(value)
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + ["null"] if "null" not in types else types
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


_converted = {}  # id(spec) -> (spec, converted components); the spec is kept so its id stays unique


def _converted_components(spec):
    hit = _converted.get(id(spec))
    if hit is None or hit[0] is not spec:
        schemas = (spec.get("components") or {}).get("schemas") or {}
        hit = (spec, {"schemas": {name: _to_json_schema(s) for name, s in schemas.items()}})
        _converted[id(spec)] = hit
    return hit[1]


def _resolve(spec, obj):
    """Follows a `#/...` $ref inside the spec (for responses, parameters...)."""
    seen = set()
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise AssertionError(f"cannot resolve $ref {ref!r}")
        seen.add(ref)
        target = spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise AssertionError(f"dangling $ref {ref!r}")
            target = target[part]
        obj = target
    return obj


def _format_error(err):
    where = "$"
    for p in err.absolute_path:
        where += f"[{p}]" if isinstance(p, int) else f".{p}"
    msg = err.message
    if err.context:  # oneOf/anyOf: say why each branch failed
        sub = sorted({e.message for e in err.context})
        msg += " (" + "; ".join(sub[:4]) + ("; …" if len(sub) > 4 else "") + ")"
    return f"at {where}: {msg}"


def validate_schema(spec, schema, instance, what="body"):
    """Validates instance against an OpenAPI schema (or {'$ref': '#/components/schemas/X'})."""
    root = {"allOf": [_to_json_schema(schema)], "components": _converted_components(spec)}
    validator = jsonschema.Draft4Validator(root, format_checker=_format_checker)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        name = schema.get("$ref", "").rsplit("/", 1)[-1] if isinstance(schema, dict) else ""
        lines = [_format_error(e) for e in errors[:15]]
        if len(errors) > 15:
            lines.append(f"… and {len(errors) - 15} more")
        raise AssertionError(
            f"{what} does not match schema {name or '(inline)'}:\n  " + "\n  ".join(lines)
            + f"\n  body: {_short(instance)}")


def _short(value, limit=600):
    try:
        s = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        s = repr(value)
    return s if len(s) <= limit else s[:limit] + "…"


# --------------------------------------------------------------------------- operations

def _template_regex(template):
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p)
                                    for p in parts) + "$")


def find_operation(spec, method, path):
    """(path_template, operation) for a method and a path template or a concrete path."""
    paths = spec.get("paths") or {}
    m = method.lower()
    if path in paths:
        item = paths[path]
    else:
        matches = [t for t in paths if _template_regex(t).match(path)]
        if not matches:
            raise AssertionError(f"{method.upper()} {path}: no such path in the spec")
        # Prefer the template with the most literal characters (/v1/x/{a}/b over /v1/x/{a}/{b}).
        path = max(matches, key=lambda t: len(re.sub(r"\{[^}]+\}", "", t)))
        item = paths[path]
    item = _resolve(spec, item)
    if m not in item:
        allowed = ", ".join(k.upper() for k in item if k in HTTP_METHODS)
        raise AssertionError(f"{method.upper()} {path}: no such operation in the spec "
                             f"(the path has {allowed})")
    return path, item[m]


def _pick_response(responses, status):
    code = str(status)
    if code in responses:
        return code
    wildcard = code[0] + "XX"
    for key in (wildcard, wildcard.lower()):
        if key in responses:
            return key
    if "default" in responses:
        return "default"
    return None


def _empty(body):
    return body is None or body == "" or body == b""


def validate_response(spec, method, path_template, status, body_json, content_type=None):
    """Validates a response body against the spec; raises AssertionError on a mismatch.

    path_template: the spec's template (`/v1/sandboxes/{sid}`) or a concrete path.
    status: the HTTP status (int or str).
    body_json: the parsed JSON body (dict/list/...); a str or bytes is parsed as JSON for a JSON
      media type. For `application/x-ndjson`, a list of objects or the raw text (one per line).
      None or "" for an empty body.
    content_type: the response's media type; default: application/json when the response
      documents it, else its only media type.
    Returns the name of the response key used ("200", "default"...).
    """
    path, op = find_operation(spec, method, path_template)
    where = f"{method.upper()} {path} -> {status}"
    responses = op.get("responses") or {}
    key = _pick_response(responses, status)
    if key is None:
        raise AssertionError(f"{where}: status not documented (has {', '.join(responses)})")
    response = _resolve(spec, responses[key])
    content = response.get("content") or {}

    if not content:
        if not _empty(body_json):
            raise AssertionError(f"{where}: the spec documents no body, got {_short(body_json)}")
        return key

    if content_type is None:
        if "application/json" in content:
            media = "application/json"
        elif len(content) == 1:
            media = next(iter(content))
        else:
            raise AssertionError(f"{where}: several media types ({', '.join(content)}); "
                                 "pass content_type")
    else:
        media = content_type.split(";")[0].strip().lower()
        if media not in content:
            raise AssertionError(f"{where}: media type {media} not documented "
                                 f"(has {', '.join(content)})")
    schema = (content[media] or {}).get("schema")
    if schema is None:
        return key

    if media == "application/x-ndjson":
        if isinstance(body_json, (bytes, bytearray)):
            body_json = body_json.decode("utf-8")
        if isinstance(body_json, str):
            items = []
            for n, line in enumerate(body_json.splitlines(), 1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except ValueError as e:
                        raise AssertionError(f"{where}: line {n} is not JSON ({e}): {line!r}")
        else:
            items = list(body_json or [])
        for n, item in enumerate(items, 1):
            validate_schema(spec, schema, item, f"{where} ({media}, record {n})")
        return key

    if media in JSON_TYPES or media.endswith("+json"):
        if isinstance(body_json, (bytes, bytearray)):
            body_json = body_json.decode("utf-8")
        if isinstance(body_json, str):
            try:
                body_json = json.loads(body_json)
            except ValueError as e:
                raise AssertionError(f"{where}: body is not JSON ({e}): {body_json[:200]!r}")
        elif body_json is None:
            raise AssertionError(f"{where}: empty body, the spec documents {media}")
    validate_schema(spec, schema, body_json, f"{where} ({media})")
    return key


# --------------------------------------------------------------------------- self-test

def _self_test(spec_path):
    spec = load_spec(spec_path)
    failures = []

    def expect_ok(desc, *args, **kw):
        try:
            validate_response(spec, *args, **kw)
        except AssertionError as e:
            failures.append(f"{desc}: unexpectedly rejected:\n{e}")
        else:
            print(f"ok   {desc}")

    def expect_fail(desc, needle, *args, **kw):
        try:
            validate_response(spec, *args, **kw)
        except AssertionError as e:
            if needle not in str(e):
                failures.append(f"{desc}: rejected, but the message lacks {needle!r}:\n{e}")
            else:
                line = next(l for l in str(e).splitlines() if needle in l)
                print(f"ok   {desc} (rejected: {line.strip()[:110]})")
        else:
            failures.append(f"{desc}: unexpectedly accepted")

    zero = "0001-01-01T00:00:00Z"
    container = {"ID": "nginx", "State": {"state": "ready"}, "PID": 0, "StartTime": zero,
                 "RootFs": "/run/katad/web/nginx/rootfs", "Annotations": {}}
    sandbox = {"ID": "web", "State": {"state": "running"}, "Hypervisor": "mock",
               "HypervisorConfig": {"KernelPath": "/k", "NumVCPUs": 1, "Debug": False},
               "Agent": "kata", "ContainersStatus": [container],
               "Annotations": {"a": "b"}, "CreatedAt": "2026-11-24T06:00:00.123456789Z",
               "SomeFutureField": [1, 2]}

    expect_ok("good SandboxStatus", "GET", "/v1/sandboxes/{sid}", 200, sandbox)
    expect_ok("SandboxStatus via a concrete path", "POST", "/v1/sandboxes/web/pause", 200, sandbox)
    expect_ok("SandboxStatus as a JSON string", "GET", "/v1/sandboxes/{sid}", 200,
              json.dumps(sandbox))
    expect_ok("201 from CreateSandbox", "POST", "/v1/sandboxes", 201, sandbox)
    expect_ok("ListSandbox", "GET", "/v1/sandboxes", 200, [sandbox, sandbox])

    bad = copy.deepcopy(sandbox)
    del bad["Hypervisor"]
    bad["State"]["state"] = "sleeping"
    bad["ContainersStatus"][0]["PID"] = "12"
    expect_fail("bad SandboxStatus (missing Hypervisor)", "'Hypervisor' is a required property",
                "GET", "/v1/sandboxes/{sid}", 200, bad)
    expect_fail("bad SandboxStatus (state enum)", "$.State.state: 'sleeping' is not one of",
                "GET", "/v1/sandboxes/{sid}", 200, bad)
    expect_fail("bad SandboxStatus (nested container PID)", "$.ContainersStatus[0].PID",
                "GET", "/v1/sandboxes/{sid}", 200, bad)
    bad2 = dict(sandbox, ID="-bad id", CreatedAt="yesterday")
    expect_fail("bad SandboxStatus (id pattern)", "$.ID", "GET", "/v1/sandboxes/{sid}", 200, bad2)
    expect_fail("bad SandboxStatus (date-time)", "$.CreatedAt", "GET", "/v1/sandboxes/{sid}",
                200, bad2)
    expect_fail("null Annotations rejected (no nullable in responses)", "$.Annotations",
                "GET", "/v1/sandboxes/{sid}", 200, dict(sandbox, Annotations=None))

    expect_ok("ContainerStatus with ExitCode", "POST",
              "/v1/sandboxes/{sid}/containers/{cid}/stop", 200,
              dict(container, State={"state": "stopped"}, ExitCode=137))
    expect_ok("Process", "POST", "/v1/sandboxes/{sid}/containers/{cid}/processes", 201,
              {"Token": "0123456789abcdef0123456789abcdef", "Pid": 42,
               "StartTime": "2026-11-24T06:00:00+01:00"})
    expect_fail("Process without Token", "'Token' is a required property",
                "POST", "/v1/sandboxes/{sid}/containers/{cid}/processes", 201,
                {"Pid": 42, "StartTime": zero})

    err = {"code": "sandbox_not_found", "message": 'sandbox "web" not found', "status": 404}
    expect_ok("Error 404", "GET", "/v1/sandboxes/{sid}", 404, err)
    expect_ok("Error via default (418)", "GET", "/", 418,
              {"code": "bad_request", "message": "teapot", "status": 418})
    expect_ok("Error 501 from a not-yet route", "GET", "/v1/factory", 501,
              {"code": "not_implemented", "message": "the factory is not implemented",
               "status": 501})
    expect_fail("Error with a string status", "$.status", "GET", "/v1/sandboxes/{sid}", 404,
                dict(err, status="404"))
    expect_fail("Error without message", "'message' is a required property",
                "DELETE", "/v1/sandboxes/{sid}", 409, {"code": "wrong_state", "status": 409})
    expect_fail("a 200 body sent with 404", "required property",
                "GET", "/v1/sandboxes/{sid}", 404, sandbox)

    expect_ok("204 DeleteSandbox, empty body", "DELETE", "/v1/sandboxes/{sid}", 204, None)
    expect_fail("204 with a body", "documents no body", "DELETE", "/v1/sandboxes/{sid}", 204,
                {"x": 1})
    expect_fail("undocumented operation", "no such operation", "PUT", "/v1/sandboxes/{sid}",
                200, {})

    expect_ok("ExitStatus", "POST", "/v1/sandboxes/{sid}/containers/{cid}/processes/{pid}/wait",
              200, {"ExitCode": 143})
    expect_ok("ps json", "GET", "/v1/sandboxes/{sid}/containers/{cid}/ps", 200,
              {"Titles": ["PID", "CMD"], "Processes": [["1", "nginx"]]})
    expect_ok("ps table", "GET", "/v1/sandboxes/{sid}/containers/{cid}/ps", 200,
              "PID CMD\n1 nginx\n", content_type="text/plain; charset=utf-8")
    expect_ok("UpdateContainer", "PUT", "/v1/sandboxes/{sid}/containers/{cid}/resources", 200,
              {"ID": "nginx", "Resources": {"memory": {"limit": 268435456},
                                            "cpu": {"quota": 50000, "period": 100000,
                                                    "cpus": "0-1"},
                                            "pids": {"limit": 100}}})
    expect_ok("ContainerStats", "GET", "/v1/sandboxes/{sid}/containers/{cid}/stats", 200,
              {"CgroupStats": {"CPUStats": {"CPUUsage": {"TotalUsage": 10, "PercpuUsage": [5, 5],
                                                         "UsageInKernelmode": 1,
                                                         "UsageInUsermode": 9}},
                               "MemoryStats": {"Usage": {"Usage": 1, "MaxUsage": 2,
                                                         "Failcnt": 0, "Limit": 3}},
                               "PidsStats": {"Current": 1, "Limit": 10}},
               "NetworkStats": [{"Name": "eth0", "RxBytes": 1, "TxBytes": 2}]})
    expect_ok("versions", "GET", "/", 200, {"APIVersions": ["v1"], "Name": "katad"})
    expect_ok("info", "GET", "/v1", 200,
              {"Name": "katad", "Version": "0.1.0", "APIVersion": "v1",
               "Hypervisors": ["qemu", "mock"], "DefaultHypervisor": "qemu", "Store": "sqlite",
               "Capabilities": {"iostream": False, "hotplug": False, "factory": False,
                                "events": True}})
    events = ('{"Type":"container.start","Time":"2026-11-24T06:00:00.123456789Z",'
              '"SandboxID":"web","ContainerID":"nginx","UID":1000}\n'
              '{"Type":"process.exit","Time":"2026-11-24T06:00:01Z","SandboxID":"web",'
              '"ContainerID":"nginx","ProcessID":"nginx","ExitCode":0}\n')
    expect_ok("events ndjson", "GET", "/v1/events", 200, events,
              content_type="application/x-ndjson")
    expect_fail("events ndjson with a bad type", "record 1", "GET", "/v1/events", 200,
                '{"Type":"sandbox.explode","Time":"2026-11-24T06:00:00Z"}\n',
                content_type="application/x-ndjson")

    # nullable (only AnnotationsPatch uses it): string or null values.
    patch = {"$ref": "#/components/schemas/AnnotationsPatch"}
    try:
        validate_schema(spec, patch, {"owner": "alice", "gone": None})
        print("ok   AnnotationsPatch with null")
    except AssertionError as e:
        failures.append(f"AnnotationsPatch with null: unexpectedly rejected:\n{e}")
    try:
        validate_schema(spec, patch, {"owner": 3})
        failures.append("AnnotationsPatch with a number: unexpectedly accepted")
    except AssertionError:
        print("ok   AnnotationsPatch with a number (rejected)")
    # RootFs oneOf in a request body.
    for rootfs, good in (("/srv/rootfs", True), ({"Source": "/dev/vdb", "Type": "ext4"}, True),
                         (7, False)):
        try:
            validate_schema(spec, {"$ref": "#/components/schemas/ContainerConfig"},
                            {"ID": "c", "RootFs": rootfs, "Cmd": {"Args": ["sh"]}})
            ok = True
        except AssertionError:
            ok = False
        (print if ok == good else failures.append)(
            f"{'ok   ' if ok == good else ''}ContainerConfig RootFs={rootfs!r} "
            f"{'accepted' if ok else 'rejected'}")

    if failures:
        print("\nFAILED:\n" + "\n\n".join(failures), file=sys.stderr)
        return 1
    print("\nopenapi_schema self-test: all checks passed")
    return 0


if __name__ == "__main__":
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "api",
                           "openapi.yaml")
    sys.exit(_self_test(sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(default)))
