"""Generate the Python code of ProdSentinel's own APIs (proto/prodsentinel/v1/*.proto).

    python scripts/generate_protos.py                  # regenerate prodsentinel/v1/
    python scripts/generate_protos.py --out DIR        # generate into DIR instead (the test does)
    python scripts/generate_protos.py --vendor-otel    # rewrite proto/opentelemetry/... first

Our protos import the OpenTelemetry protos, whose .proto sources are not shipped in the
`opentelemetry-proto` wheel. They are vendored under proto/opentelemetry/ for protoc's
imports only: no Python is generated for them, so the generated modules import the
installed `opentelemetry.proto.*_pb2` (one descriptor pool, the messages any OTLP code
uses). The vendored files are printed from the installed package's own serialized
descriptors, so they are exactly the version installed; `--vendor-otel` rewrites them
and `check_vendored()` proves that protoc compiles them back to the same descriptors.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OWN_PROTOS = "prodsentinel/v1"
WELL_KNOWN_PROTOS = Path(grpc_tools.__file__).parent / "_proto"
BIN = Path(sys.executable).parent

# Installed module -> vendored path. metrics is not used by query.proto but vendored so
# other APIs can import it.
VENDORED = {
    "opentelemetry.proto.common.v1.common_pb2": "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry.proto.resource.v1.resource_pb2": "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry.proto.trace.v1.trace_pb2": "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry.proto.logs.v1.logs_pb2": "opentelemetry/proto/logs/v1/logs.proto",
    "opentelemetry.proto.metrics.v1.metrics_pb2": "opentelemetry/proto/metrics/v1/metrics.proto",
}

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in FDP.Type.items()
    if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


# --------------------------------------------------------------------------- generation


def own_protos() -> list[Path]:
    return sorted((PROTO_ROOT / OWN_PROTOS).glob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc for every proto/prodsentinel/v1/*.proto into `out`; return the files written."""
    protos = own_protos()
    if not protos:
        raise SystemExit(f"no .proto files in {PROTO_ROOT / OWN_PROTOS}")
    package = out / OWN_PROTOS
    package.mkdir(parents=True, exist_ok=True)
    _protoc(
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(path.relative_to(PROTO_ROOT)) for path in protos),
    )
    for init in (out / "prodsentinel" / "__init__.py", package / "__init__.py"):
        if not init.exists():
            init.write_text(
                '"""Generated code of ProdSentinel\'s APIs (scripts/generate_protos.py)."""\n'
            )
    (out / "prodsentinel" / "py.typed").touch()  # the .pyi stubs are the types (PEP 561)
    return sorted(package.iterdir())


def _protoc(*args: str) -> None:
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{WELL_KNOWN_PROTOS}",
        *args,
    ]
    result = subprocess.run(command, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"protoc failed ({' '.join(command)}):\n{result.stderr}")


# --------------------------------------------------------------------------- vendoring


def installed_descriptor(module: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto the installed opentelemetry-proto module was generated from."""
    serialized = importlib.import_module(module).DESCRIPTOR.serialized_pb
    return descriptor_pb2.FileDescriptorProto.FromString(serialized)


def vendor_otel() -> None:
    for module, path in VENDORED.items():
        target = PROTO_ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(print_file(installed_descriptor(module), module))


def check_vendored() -> list[str]:
    """Compile the vendored files; return the paths whose descriptors differ from the installed."""
    with tempfile.TemporaryDirectory() as temp:
        out = Path(temp) / "otel.pb"
        _protoc(f"--descriptor_set_out={out}", *VENDORED.values())
        compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    by_name = {file.name: file for file in compiled.file}
    differ = []
    for module, path in VENDORED.items():
        expected = installed_descriptor(module)
        actual = by_name[path]
        _clear_json_names(actual)
        if actual != expected:
            differ.append(path)
    return differ


def _clear_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    def walk(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            field.ClearField("json_name")
        for nested in message.nested_type:
            walk(nested)

    for message in file.message_type:
        walk(message)


def print_file(file: descriptor_pb2.FileDescriptorProto, module: str) -> str:
    """A .proto source equivalent to `file` (comments are not in descriptors)."""
    lines = [
        "// Vendored for protoc imports only: printed by scripts/generate_protos.py from the",
        f"// descriptor of the installed {module} (opentelemetry-proto). Do not edit.",
        "",
        f'syntax = "{file.syntax or "proto2"}";',
        "",
        f"package {file.package};",
        "",
    ]
    lines += [f'import "{dependency}";' for dependency in file.dependency]
    if file.dependency:
        lines.append("")
    lines += [f"option {name} = {value};" for name, value in _options(file.options)]
    for enum in file.enum_type:
        lines += ["", *_enum(enum, file.package, "")]
    for message in file.message_type:
        lines += ["", *_message(message, file.package, "")]
    return "\n".join(lines) + "\n"


def _options(options: Message) -> Iterator[tuple[str, str]]:
    for field, value in options.ListFields():
        if field.type == FDP.TYPE_STRING:
            literal = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif field.type == FDP.TYPE_BOOL:
            literal = "true" if value else "false"
        elif field.type == FDP.TYPE_ENUM:
            literal = field.enum_type.values_by_number[value].name
        else:
            literal = str(value)
        yield field.name, literal


def _bracketed(options: Message) -> str:
    pairs = [f"{name} = {value}" for name, value in _options(options)]
    return f" [{', '.join(pairs)}]" if pairs else ""


def _message(message: descriptor_pb2.DescriptorProto, package: str, indent: str) -> list[str]:
    inner = indent + "  "
    lines = [f"{indent}message {message.name} {{"]
    lines += [f"{inner}option {name} = {value};" for name, value in _options(message.options)]
    for nested in message.nested_type:
        lines += _message(nested, package, inner)
    for enum in message.enum_type:
        lines += _enum(enum, package, inner)
    printed_oneofs: set[int] = set()
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            index = field.oneof_index
            if index in printed_oneofs:
                continue
            printed_oneofs.add(index)
            lines.append(f"{inner}oneof {message.oneof_decl[index].name} {{")
            lines += [
                _field(member, package, inner + "  ")
                for member in message.field
                if member.HasField("oneof_index")
                and member.oneof_index == index
                and not member.proto3_optional
            ]
            lines.append(f"{inner}}}")
        else:
            lines.append(_field(field, package, inner))
    for reserved in message.reserved_range:
        last = reserved.end - 1  # DescriptorProto.ReservedRange.end is exclusive
        span = str(reserved.start) if last == reserved.start else f"{reserved.start} to {last}"
        lines.append(f"{inner}reserved {span};")
    if message.reserved_name:
        lines.append(f"{inner}reserved {', '.join(f'{n!r}' for n in message.reserved_name)};")
    lines.append(f"{indent}}}")
    return lines


def _field(field: descriptor_pb2.FieldDescriptorProto, package: str, indent: str) -> str:
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        kind = field.type_name.removeprefix(".").removeprefix(f"{package}.")
    else:
        kind = _SCALARS[field.type]
    label = ""
    if field.label == FDP.LABEL_REPEATED:
        label = "repeated "
    elif field.proto3_optional:
        label = "optional "
    return f"{indent}{label}{kind} {field.name} = {field.number}{_bracketed(field.options)};"


def _enum(enum: descriptor_pb2.EnumDescriptorProto, package: str, indent: str) -> list[str]:
    inner = indent + "  "
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{inner}option {name} = {value};" for name, value in _options(enum.options)]
    lines += [
        f"{inner}{value.name} = {value.number}{_bracketed(value.options)};" for value in enum.value
    ]
    for reserved in enum.reserved_range:  # EnumReservedRange.end is inclusive
        span = (
            str(reserved.start)
            if reserved.end == reserved.start
            else f"{reserved.start} to {reserved.end}"
        )
        lines.append(f"{inner}reserved {span};")
    if enum.reserved_name:
        lines.append(f"{inner}reserved {', '.join(f'{n!r}' for n in enum.reserved_name)};")
    lines.append(f"{indent}}}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: checkout)")
    parser.add_argument(
        "--vendor-otel",
        action="store_true",
        help="first rewrite proto/opentelemetry/ from the installed opentelemetry-proto",
    )
    args = parser.parse_args()
    if args.vendor_otel:
        vendor_otel()
    differ = check_vendored()
    if differ:
        print(f"vendored protos differ from the installed package: {differ}", file=sys.stderr)
        print("rerun with --vendor-otel", file=sys.stderr)
        return 1
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
