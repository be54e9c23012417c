#!/usr/bin/env python3
"""The house's floor plan, checked: every quoted #include in harness/, plugins/ and examples/
goes down to a lower floor or stays in its own room, and no file includes itself through others.

Rooms and floors are listed below (docs/architecture.md, "Source layout", draws them). Plugins and
the examples may include only the SDK (harness/include/lory) and their own folder. Usage:
check_layering.py SOURCE_DIR; exits 1 naming every include that breaks the plan.
"""
import os
import re
import sys

# (room = a folder, floor): a room may include its own headers and those of rooms on lower floors.
ROOMS = [
    ("harness/include/lory/abi", 0),      # the C ABI between the harness and plugin files
    ("harness/include/lory/core", 1),     # torch-free SDK types: parameters, corpus, batchers, hashing
    ("harness/include/lory/nn", 2),       # torch-facing SDK: FFN modules, routing, routers, models
    ("harness/include/lory/testkit", 3),  # checks for plugin authors
    ("harness/core/support", 4),          # diagnostics, paths, tables, program exit, test faults
    ("harness/core/config", 5),           # TOML tree with locations, parameter schemas
    ("harness/core/corpus", 5),           # corpus files, instance stream, embedding file
    ("harness/core/store", 5),            # results store (SQLite), reader, merge
    ("harness/core/tasks", 5),            # in-context task files and their accuracy
    ("harness/nn", 5),                    # code of the torch-facing SDK (liblory_nn)
    ("harness/core/plugins", 6),          # plugin catalogue and loading
    ("harness/core/experiment", 7),       # experiment files, grids, cell resolution and identity
    ("harness/train", 8),                 # training, evaluation, checkpoints (liblory_train)
    ("harness/testkit", 8),               # code of the SDK's testkit
    ("harness/cli", 9),                   # the `lory` program
    ("harness/worker", 9),                # the `lory-worker` program
    ("harness/data_tool", 9),             # the `lory-data` program
]
SDK_FLOOR = 3  # rooms at or below it are the SDK
# Headers generated at build time (build/generated), by the room they belong to.
GENERATED = {"lory/core/build_info.h": "harness/include/lory/core", "core/code_version.h": "harness/core/store"}
PLUGIN_ROOTS = ["plugins", "examples"]
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def room_of(path):
    best = None
    for room, floor in ROOMS:
        if path == room or path.startswith(room + "/"):
            if best is None or len(room) > len(best[0]):
                best = (room, floor)
    return best


def main(source):
    os.chdir(source)
    files = []
    for top in ["harness"] + PLUGIN_ROOTS:
        for folder, _, names in os.walk(top):
            files += [os.path.join(folder, n) for n in names if n.endswith((".h", ".cpp", ".hpp", ".h.in"))]
    problems, edges = [], {}
    for path in sorted(files):
        text = open(path, encoding="utf-8").read()
        plugin = any(path.startswith(root + "/") for root in PLUGIN_ROOTS)
        room = room_of(path)
        if room is None and not plugin:
            problems.append(f"{path}: in no room of the floor plan (tests/layering/check_layering.py)")
            continue
        for match in INCLUDE.finditer(text):
            spelled = match.group(1)
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path}:{line}"
            candidates = [os.path.normpath(os.path.join(os.path.dirname(path), spelled)),
                          os.path.join("harness", spelled), os.path.join("harness/include", spelled)]
            target = next((c for c in candidates if os.path.isfile(c)), None)
            if target is None and spelled not in GENERATED:
                problems.append(f'{where}: "{spelled}" is not a file of the tree')
                continue
            if target is not None:
                edges.setdefault(path, []).append((target, where))
            target_room = room_of(target) if target else next(r for r in ROOMS if r[0] == GENERATED[spelled])
            if plugin:
                same_folder = target is not None and os.path.dirname(target).startswith(os.path.dirname(path))
                if not same_folder and (target_room is None or target_room[1] > SDK_FLOOR):
                    problems.append(f'{where}: a plugin includes "{spelled}", which is not in the SDK (harness/include/lory)')
                continue
            if target_room is None:
                problems.append(f'{where}: "{spelled}" lies outside the harness')
            elif target_room[0] != room[0] and target_room[1] >= room[1]:
                problems.append(f'{where}: {room[0]} (floor {room[1]}) includes "{spelled}" of {target_room[0]} '
                                f'(floor {target_room[1]}): an arrow that does not go down')
    # No file reaches itself through its includes.
    state = {}
    def visit(node, stack):
        state[node] = 1
        for target, where in edges.get(node, []):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target] if target in stack else [node, target]
                problems.append(f"{where}: an include circle: {' -> '.join(cycle)}")
            elif state.get(target) is None:
                visit(target, stack + [target])
        state[node] = 2
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    for p in problems:
        print(p)
    count = sum(len(v) for v in edges.values())
    if problems:
        print(f"{len(problems)} include(s) break the floor plan")
        return 1
    print(f"floor plan kept: {len(files)} files, {count} includes, {len(ROOMS)} rooms, no upward arrow, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
