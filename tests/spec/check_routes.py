#!/usr/bin/python3
"""Checks that katad's router and api/openapi.yaml describe the same routes.

Usage:
    check_routes.py api/openapi.yaml routes.txt
    katad --list-routes | check_routes.py api/openapi.yaml        # or "-" for stdin

routes.txt is the output of `katad --list-routes`: one route per line, `METHOD /path/{param}`
(e.g. `GET /v1/sandboxes/{sid}/containers/{cid}`). Blank lines and lines starting with `#` are
ignored. Paths and parameter names must match the spec's path templates exactly.

Exit status: 0 when both sides agree; 1 listing every routed (method, path) missing from the spec
and every spec (method, path) that is not routed; 2 on a usage or input error.
"""

import re
import sys

import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ROUTE_RE = re.compile(r"^([A-Z]+)\s+(/\S*)$")


def spec_routes(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or not isinstance(spec.get("paths"), dict):
        raise ValueError(f"{spec_path}: no 'paths' object")
    routes = set()
    for path, item in spec["paths"].items():
        if not isinstance(item, dict):
            continue
        for method in item:
            if method in HTTP_METHODS:
                routes.add((method.upper(), path))
    return routes


def routed_routes(lines, name):
    routes = set()
    errors = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = ROUTE_RE.match(line)
        if not m:
            errors.append(f"{name}:{n}: not 'METHOD /path': {raw.rstrip()!r}")
            continue
        route = (m.group(1), m.group(2))
        if route in routes:
            errors.append(f"{name}:{n}: duplicate route {route[0]} {route[1]}")
        routes.add(route)
    return routes, errors


def shape(path):
    """The path with its parameter names erased, to spot parameter-name mismatches."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def main(argv):
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    spec_path = argv[1]
    routes_path = argv[2] if len(argv) == 3 else "-"

    try:
        in_spec = spec_routes(spec_path)
        if routes_path == "-":
            routed, errors = routed_routes(sys.stdin.read().splitlines(), "<stdin>")
        else:
            with open(routes_path, encoding="utf-8") as f:
                routed, errors = routed_routes(f.read().splitlines(), routes_path)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"check_routes: {e}", file=sys.stderr)
        return 2
    if errors:
        for e in errors:
            print(f"check_routes: {e}", file=sys.stderr)
        return 2
    if not routed:
        print(f"check_routes: {routes_path}: no routes", file=sys.stderr)
        return 2

    missing = sorted(routed - in_spec, key=lambda r: (r[1], r[0]))
    unrouted = sorted(in_spec - routed, key=lambda r: (r[1], r[0]))
    spec_shapes = {(m, shape(p)): p for m, p in in_spec}
    routed_shapes = {(m, shape(p)): p for m, p in routed}

    if not missing and not unrouted:
        print(f"check_routes: OK, {len(routed)} routes agree with {spec_path}")
        return 0

    if missing:
        print(f"Routed by katad but missing from {spec_path} ({len(missing)}):")
        for m, p in missing:
            hint = spec_shapes.get((m, shape(p)))
            extra = f"   (spec has {m} {hint}: parameter names differ)" if hint else ""
            print(f"  {m} {p}{extra}")
    if unrouted:
        print(f"In {spec_path} but not routed by katad ({len(unrouted)}):")
        for m, p in unrouted:
            hint = routed_shapes.get((m, shape(p)))
            extra = f"   (katad routes {m} {hint}: parameter names differ)" if hint else ""
            print(f"  {m} {p}{extra}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
