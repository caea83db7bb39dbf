"""Rebuild a `terraform providers schema -json`-shaped subset from a cdktn/cdktf
prebuilt-provider wheel (PyPI cdktn-provider-google / cdktf-cdktf-provider-google).

The wheel embeds the npm package (jsii tgz) whose lib/<resource>/index.js is
generated from the provider's real schema: per attribute a comment
`// name - computed: X, optional: Y, required: Z`, and per settable field an
entry {isBlock, type, storageClassType} in *ToHclTerraform().

usage: extract_schema.py WHEEL OUT.json [resource_type ...]   (no types = all)
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import zipfile
from collections import defaultdict

COMMENT = re.compile(r"^\s+// (\w+) - computed: (true|false), optional: (true|false), required: (true|false)$", re.M)
CLASS = re.compile(r"^class (\w+) extends cdkt[nf]\.(\w+) \{$", re.M)
FUNC = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{$", re.M)
ENTRY = re.compile(
    r"^\s+(\w+): \{\n\s+value: (.*),\n\s+isBlock: (true|false),\n\s+type: \"(\w+)\",\n\s+storageClassType: \"(\w+)\",\n\s+\},",
    re.M,
)
NEW = re.compile(r"new (cdkt[nf]\.)?(\w+)\(this, \"(\w+)\"(?:, (true|false))?\)")
GETTER = re.compile(r"(cdkt[nf]\.Fn\.tolist\()?this\.(get\w+Attribute|interpolationForAttribute)\('(\w+)'\)")
TF_TYPE = re.compile(r'(?:static |\w+\.)tfResourceType = "(\w+)";')
VERSION = re.compile(r"providerVersion: '([^']+)'")

PRIM = {"string": "string", "number": "number", "boolean": "bool", "any": "dynamic"}
GETTERS = {
    "getStringAttribute": "string",
    "getNumberAttribute": "number",
    "getBooleanAttribute": "bool",
    "getListAttribute": ["list", "string"],
    "getNumberListAttribute": ["list", "number"],
    "getBooleanListAttribute": ["list", "bool"],
    "getStringMapAttribute": ["map", "string"],
    "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"],
    "getAnyMapAttribute": ["map", "dynamic"],
    "interpolationForAttribute": "dynamic",
}
MAPS = {
    "StringMap": ["map", "string"],
    "NumberMap": ["map", "number"],
    "BooleanMap": ["map", "bool"],
    "AnyMap": ["map", "dynamic"],
    "StringListMap": ["map", ["list", "string"]],
    "NumberListMap": ["map", ["list", "number"]],
    "BooleanListMap": ["map", ["list", "bool"]],
    "AnyListMap": ["map", ["list", "dynamic"]],
}


def split_toplevel(js: str) -> tuple[dict[str, str], dict[str, str]]:
    """class name -> body, struct function name -> body."""
    marks = sorted(
        [(m.start(), "class", m.group(1)) for m in CLASS.finditer(js)]
        + [(m.start(), "func", m.group(1)) for m in FUNC.finditer(js)]
    )
    classes, funcs = {}, {}
    for i, (pos, kind, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(js)
        (classes if kind == "class" else funcs)[name] = js[pos:end]
    return classes, funcs


IFACE = re.compile(r"^export interface (\w+)(?: extends [\w.]+)? \{$(.*?)^\}$", re.M | re.S)
PROP = re.compile(r"/\*\*(.*?)\*/\s*readonly (\w+)\??:", re.S)
ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")


def parse_docs(dts: str) -> dict[str, dict[str, str]]:
    """interface name -> snake attribute name -> description (from the .d.ts)."""
    out = {}
    for m in IFACE.finditer(dts):
        props = {}
        for p in PROP.finditer(m.group(2)):
            doc = p.group(1)
            a = ANCHOR.search(doc)
            if not a:
                continue
            text = re.sub(r"^\s*\*\s?", "", doc, flags=re.M)
            text = text.split("Docs at Terraform Registry:")[0].strip()
            props[a.group(1)] = " ".join(text.split())
        out[m.group(1)] = props
    return out


class Module:
    def __init__(self, js: str, dts: str = ""):
        self.js = js
        self.classes, self.funcs = split_toplevel(js)
        self.docs = parse_docs(dts)

    def members(self, cls: str) -> dict[str, dict]:
        body = self.classes.get(cls, "")
        out = {}
        ms = list(COMMENT.finditer(body))
        for i, m in enumerate(ms):
            chunk = body[m.end() : ms[i + 1].start() if i + 1 < len(ms) else len(body)]
            name = m.group(1)
            info = {
                "computed": m.group(2) == "true",
                "optional": m.group(3) == "true",
                "required": m.group(4) == "true",
            }
            n = NEW.search(chunk)
            g = GETTER.search(chunk)
            if n and n.group(3) == name:
                info["new"] = n.group(2)
                info["lib"] = bool(n.group(1))
                info["wraps_set"] = n.group(4) == "true"
            elif g and g.group(3) == name:
                t = GETTERS.get(g.group(2), "dynamic")
                if g.group(1) and isinstance(t, list) and t[0] == "list":
                    t = ["set", t[1]]
                info["type"] = t
            out[name] = info
        return out

    def entries(self, text: str) -> dict[str, dict]:
        out = {}
        for m in ENTRY.finditer(text):
            name, value, is_block, typ, storage = m.groups()
            nested = [
                f
                for f in re.findall(r"(\w+)ToHclTerraform", value)
                if f not in {"string", "number", "boolean", "any", "hash", "list"}
            ]
            out[name] = {
                "is_block": is_block == "true",
                "kind": typ,
                "storage": storage,
                "nested_func": nested[0] if nested else None,
                "mapped": "listMapperHcl" in value or "hashMapperHcl" in value,
                "value": value,
            }
        return out

    # --- schema building --------------------------------------------------------------

    @staticmethod
    def cls_of(func: str) -> str:
        return func[0].upper() + func[1:] + "OutputReference"

    def object_type(self, cls: str, depth: int = 0) -> list:
        """cty type of a (computed or nested-attribute) object whose getters live in cls."""
        attrs = {}
        if depth > 12:
            return ["object", attrs]
        for name, info in self.members(cls).items():
            attrs[name] = self.member_type(info, depth)
        return ["object", attrs]

    def member_type(self, info: dict, depth: int):
        if "type" in info:
            return info["type"]
        new = info.get("new")
        if not new:
            return "dynamic"
        if info.get("lib"):
            return MAPS.get(new, "dynamic")
        if new.endswith("OutputReference"):
            return self.object_type(new, depth + 1)
        if new.endswith("List"):
            return [
                "set" if info.get("wraps_set") else "list",
                self.object_type(new[:-4] + "OutputReference", depth + 1),
            ]
        if new.endswith("Map"):
            return ["map", self.object_type(new[:-3] + "OutputReference", depth + 1)]
        return "dynamic"

    def storage_type(self, e: dict, info: dict, depth: int):
        s, k = e["storage"], e["kind"]
        if s in PRIM:
            return PRIM[s]
        for p in ("string", "number", "boolean", "any"):
            if s == p + "List":
                return ["set" if k == "set" else "list", PRIM[p]]
            if s == p + "Map":
                return ["map", PRIM[p]]
            if s == p + "ListMap":
                return ["map", ["list", PRIM[p]]]
        return self.member_type(info, depth)  # complex nested attribute (framework-based resources)

    def block(self, cls: str, entries: dict[str, dict], depth: int = 0, iface: str | None = None) -> dict:
        attributes, block_types = {}, {}
        docs = self.docs.get(iface or cls.removesuffix("OutputReference"), {})
        members = self.members(cls)
        body = self.classes.get(cls, "")
        for name, e in entries.items():
            if name in members:
                continue
            # Older cdktn/cdktf output (ES2018 target) drops the comment of a settable
            # field; an optional one has a reset<Name>() method, a required one none.
            m = re.search(r"(?:this\._|struct\.)(\w+)", e["value"])
            camel = m.group(1) if m else name
            required = ("reset" + camel[0].upper() + camel[1:] + "()") not in body
            members[name] = {"computed": False, "optional": not required, "required": required}
        for name, info in members.items():
            e = entries.get(name)
            flags = {k: True for k in ("required", "optional", "computed") if info[k]}
            if e and e["is_block"]:
                nested_func = e["nested_func"]
                nested_cls = self.cls_of(nested_func) if nested_func else None
                nested_entries = self.entries(self.funcs.get(nested_func, "")) if nested_func else {}
                bt = {
                    "nesting_mode": "single" if e["kind"] == "struct" else ("set" if e["kind"] == "set" else "list"),
                    "block": self.block(nested_cls, nested_entries, depth + 1) if nested_cls else {},
                    **({"description": docs[name]} if docs.get(name) else {}),
                }
                if info["required"]:
                    bt["min_items"] = 1
                if not e["mapped"] and e["kind"] != "struct":
                    bt["max_items"] = 1
                block_types[name] = bt
            elif e:
                attributes[name] = {"type": self.storage_type(e, info, depth), **flags}
                if docs.get(name):
                    attributes[name]["description"] = docs[name]
            else:  # not settable: computed-only (or a write-only getter)
                attributes[name] = {"type": self.member_type(info, depth), **flags}
        out = {}
        if attributes:
            out["attributes"] = attributes
        if block_types:
            out["block_types"] = block_types
        return out

    def top(self) -> tuple[str | None, dict, str | None]:
        for cls, body in self.classes.items():
            if re.search(r"extends cdkt[nf]\.(TerraformResource|TerraformDataSource|TerraformProvider) \{", body[:300]):
                t = TF_TYPE.search(body)
                v = VERSION.search(body)
                synth = body[body.find("synthesizeHclAttributes()") :]
                return (
                    (t.group(1) if t else None),
                    self.block(cls, self.entries(synth), iface=cls + "Config"),
                    (v.group(1) if v else None),
                )
        return None, {}, None


def open_pkg(wheel: str) -> tarfile.TarFile:
    z = zipfile.ZipFile(wheel)
    name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    return tarfile.open(fileobj=io.BytesIO(z.read(name)))


def main() -> None:
    wheel, out_path, *wanted = sys.argv[1:]
    tar = open_pkg(wheel)
    by_dir, dts_dir = defaultdict(list), defaultdict(list)
    for m in tar.getmembers():
        p = m.name.split("/")
        if len(p) >= 4 and p[1] == "lib" and m.name.endswith(".js"):
            by_dir[p[2]].append(m)
        elif len(p) >= 4 and p[1] == "lib" and m.name.endswith(".d.ts"):
            dts_dir[p[2]].append(m)
    dirs = sorted(by_dir)

    def type_to_dir(t: str) -> str:
        if t.startswith("data."):
            return "data-" + t[5:].replace("_", "-")
        return t.split("_", 1)[1].replace("_", "-") if t != "provider" else "provider"

    wanted_dirs = [type_to_dir(t) for t in wanted] if wanted else dirs
    provider_name = None
    resources, data_sources, provider = {}, {}, {}
    version = None
    for d in [*wanted_dirs, "provider"]:
        if d not in by_dir:
            print(f"missing in package: {d}", file=sys.stderr)
            continue
        js = "\n".join(tar.extractfile(m).read().decode() for m in sorted(by_dir[d], key=lambda m: m.name))
        dts = "\n".join(tar.extractfile(m).read().decode() for m in sorted(dts_dir[d], key=lambda m: m.name))
        mod = Module(js, dts)
        tf_type, block, v = mod.top()
        version = version or v
        if d == "provider":
            block.get("attributes", {}).pop("alias", None)  # a meta-argument cdktn adds, not in the schema
            provider = {"version": 0, "block": block}
        elif d.startswith("data-"):
            data_sources[tf_type] = {"version": 0, "block": block}
        else:
            resources[tf_type] = {"version": 0, "block": block}
    pkg = json.load(tar.extractfile("package/package.json"))
    m = re.search(r"provider version ([0-9.]+)", tar.extractfile("package/README.md").read().decode())
    provider_name = "registry.terraform.io/hashicorp/" + pkg["name"].split("provider-", 1)[1].replace(
        "google-beta", "google-beta"
    )
    all_types = sorted(
        ("data." if d.startswith("data-") else "")
        + ("google_" + d[len("data-google-") :] if d.startswith("data-google-") else "google_" + d).replace("-", "_")
        for d in dirs
        if d != "provider" and not d.startswith("lazy-index")
    )
    doc = {
        "format_version": "1.0",
        "_source": {
            "package": pkg["name"],
            "package_version": pkg["version"],
            "provider_version": version or (m.group(1) if m else None),
        },
        "_all_types_guess": all_types,
        "provider_schemas": {
            provider_name: {
                "provider": provider,
                "resource_schemas": resources,
                "data_source_schemas": data_sources,
            }
        },
    }
    with open(out_path, "w") as out:
        json.dump(doc, out, indent=1, sort_keys=True)
    print(
        f"{pkg['name']} {pkg['version']} -> provider {doc['_source']['provider_version']}: "
        f"{len(resources)} resources, {len(data_sources)} data sources, {len(all_types)} types listed"
    )


if __name__ == "__main__":
    main()
