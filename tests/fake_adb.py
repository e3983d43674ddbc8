"""A stand-in for adb, placed first on PATH by the device tests. It emulates
`devices`, `-s SERIAL`, `shell` (getprop answers from a table; any other command
runs in bash inside a sandbox folder that plays the phone's file system, so the
host-built runner really runs), `push` and `pull`.

Environment: FAKE_ADB_ROOT (the sandbox, also holds adb.log), FAKE_ADB_DEVICES
("serial[:state],..."), FAKE_ADB_DISCONNECT_ON (a word: the first call whose
command line contains it finds the phone gone, and so does every later call),
FAKE_ADB_PROPS (a JSON object of system properties that replace the defaults).

A phone whose ro.product.cpu.abi is arm64-v8a runs the arm64 programs pushed to it
under qemu-aarch64 (edge4k.devices.native.qemu_command), as its kernel would natively."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

PROPS = {"ro.product.model": "Fake Phone 1", "ro.product.manufacturer": "Edge4K", "ro.soc.model": "FAKE8650",
         "ro.board.platform": "fake", "ro.build.version.release": "15", "ro.product.cpu.abi": "x86_64"}


def arm64_program(path):
    """An arm64 ELF executable (it names a program interpreter), not a shared library."""
    data = Path(path).read_bytes()
    if data[:5] != b"\x7fELF\x02" or int.from_bytes(data[18:20], "little") != 183:
        return False
    phoff, size, count = (int.from_bytes(data[a:b], "little") for a, b in ((32, 40), (54, 56), (56, 58)))
    return any(int.from_bytes(data[phoff + i * size:phoff + i * size + 4], "little") == 3   # PT_INTERP
               for i in range(count))


def run_under_qemu(program):
    """Keep the pushed arm64 program beside a script of its name that runs it in qemu."""
    from edge4k.devices.native import qemu_command
    elf = program.with_name(f".{program.name}.arm64")
    program.replace(elf)
    program.write_text(f"#!/bin/sh\nexec {shlex.join(qemu_command())} {shlex.quote(str(elf))} \"$@\"\n")


def main(argv):
    root = Path(os.environ["FAKE_ADB_ROOT"])
    PROPS.update(json.loads(os.environ.get("FAKE_ADB_PROPS", "{}")))
    with open(root / "adb.log", "a") as log:
        log.write(" ".join(argv) + "\n")
    devices = dict((d.split(":") + ["device"])[:2] for d in os.environ.get("FAKE_ADB_DEVICES", "").split(",") if d)
    gone = root / "disconnected"
    trigger = os.environ.get("FAKE_ADB_DISCONNECT_ON")
    if trigger and trigger in " ".join(argv):
        gone.touch()
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if argv == ["devices"]:
        print("List of devices attached")
        for s, state in devices.items():
            if not gone.exists():
                print(f"{s}\t{state}")
        return 0
    if serial is None:
        serial = next(iter(devices), None)
        if len(devices) != 1:
            print("error: no devices/emulators found" if not devices else "error: more than one device/emulator",
                  file=sys.stderr)
            return 1
    if serial not in devices or gone.exists():
        print(f"error: device '{serial}' not found", file=sys.stderr)
        return 1
    phone = root / "phone"

    def local(remote):   # the phone's path inside the sandbox
        return phone / remote.lstrip("/")

    command, args = argv[0], argv[1:]
    if command == "push":
        src, dst = Path(args[0]), local(args[1])
        if dst.is_dir():
            dst = dst / src.name
        shutil.copy(src, dst)
        if PROPS["ro.product.cpu.abi"] == "arm64-v8a" and arm64_program(dst):
            run_under_qemu(dst)
        print(f"{src}: 1 file pushed.")
        return 0
    if command == "pull":
        src = local(args[0])
        if not src.exists():
            print(f"adb: error: failed to stat remote object '{args[0]}': No such file or directory", file=sys.stderr)
            return 1
        shutil.copy(src, args[1])
        print(f"{args[0]}: 1 file pulled.")
        return 0
    if command == "shell":
        line = " ".join(args)
        if line.startswith("getprop "):
            print(PROPS.get(line.split()[1], ""))
            return 0
        phone.mkdir(parents=True, exist_ok=True)
        return subprocess.run(["bash", "-c", line.replace("/data/local/tmp", str(phone / "data/local/tmp"))]).returncode
    print(f"fake adb: unsupported command {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
