"""The Windows logon task's XML (guard.service.logontask), checked against the rules of the
Task Scheduler schema (no Windows here: schtasks would check it only on a user's PC).

`task_problems` is a small checker of those rules, written from Microsoft's schema
documentation and encoded below as data: for each type we emit, its allowed children, which are
required (XSD's minOccurs defaults to 1), how often each may appear, whether their order is
fixed (xs:sequence) or free (xs:all), its attributes, and the value rules of the simple types.
tests/commands/test_windows_task.py runs it on the file `guardctl install-service --windows`
hands to schtasks.

The pages used (github.com/MicrosoftDocs/win32, desktop-src/TaskSchd/):
  taskschedulerschema-task-element.md                  (Task: PrincipalKey, ContextKeyRef,
                                                         UniqueId identity constraints)
  taskschedulerschema-tasktype-complextype.md          (taskType; version: versionType)
  taskschedulerschema-versiontype-simpletype.md
  taskschedulerschema-registrationinfotype-complextype.md
  taskschedulerschema-triggerstype-complextype.md      (0..48 of triggerGroup)
  taskschedulerschema-triggergroup-group.md
  taskschedulerschema-triggerbasetype-complextype.md   (the sequence every trigger starts with)
  taskschedulerschema-logontriggertype-complextype.md
  taskschedulerschema-principalstype-complextype.md
  taskschedulerschema-principaltype-complextype.md
  taskschedulerschema-logontype-simpletype.md
  taskschedulerschema-runleveltype-simpletype.md
  taskschedulerschema-settingstype-complextype.md
  taskschedulerschema-idlesettingstype-complextype.md
  taskschedulerschema-restarttype-complextype.md
  taskschedulerschema-multipleinstancespolicytype-simpletype.md
  taskschedulerschema-prioritytype-simpletype.md
  taskschedulerschema-executiontimelimit-settingstype-element.md  (PT0S: no limit)
  taskschedulerschema-actionstype-complextype.md       (1..32 of actionGroup; Context: IDREF)
  taskschedulerschema-actiongroup-group.md
  taskschedulerschema-actionbasetype-complextype.md    (id attribute)
  taskschedulerschema-exectype-complextype.md
  taskschedulerschema-pathtype-simpletype.md           (non-empty, at most 260 characters)
  taskschedulerschema-nonemptystring-simpletype.md
Types we never emit (dataType, networkSettingsType, repetitionType, the other triggers and
actions...) are named but not encoded: the checker reports them rather than passing them.
"""

from __future__ import annotations

import codecs
import re
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from guard.service import logontask

NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
NS = "{" + NAMESPACE + "}"


# ---- the simple types: a value's problem, or None ---------------------------------------------
_DURATION = re.compile(r"(-?)P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
                       r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_DATETIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_NCNAME = re.compile(r"[A-Za-z_][\w.-]*")


def duration_seconds(text: str) -> float | None:
    """An xs:duration in seconds (a year as 365 days, a month as 30: xs:duration has no exact
    order between months and days, and the bounds checked here are in minutes and days); None
    when it is not a duration."""
    m = _DURATION.fullmatch(text)
    if m is None:
        return None
    sign, years, months, days, hours, minutes, seconds = m.groups()
    total = ((int(years or 0) * 365 + int(months or 0) * 30 + int(days or 0)) * 86400
             + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0))
    return -total if sign else total


def _duration(low: str | None = None, high: str | None = None) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        value = duration_seconds(text.strip())
        if value is None:
            return f"{text!r} is not a duration (PnYnMnDTnHnMnS)"
        if low is not None and value < (duration_seconds(low) or 0):
            return f"{text} is below the minimum {low}"
        if high is not None and value > (duration_seconds(high) or 0):
            return f"{text} is above the maximum {high}"
        return None
    return check


def _integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            return f"{text!r} is not an integer"
        if not low <= int(text) <= high:
            return f"{text.strip()} is outside {low}..{high}"
        return None
    return check


def _enumeration(*values: str) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        return None if text.strip() in values else f"{text!r} is not one of {', '.join(values)}"
    return check


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        return None if regex.fullmatch(text.strip()) else f"{text!r} is not {what}"
    return check


def _string(min_length: int = 0, max_length: int | None = None) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        if len(text) < min_length:
            return "an empty value where the schema wants a non-empty string"
        if max_length is not None and len(text) > max_length:
            return f"{len(text)} characters, above the maximum {max_length}"
        return None
    return check


SIMPLE: Mapping[str, Callable[[str], str | None]] = {
    # xs:boolean also takes 1 and 0; the checker holds the XML to what Task Scheduler writes
    "boolean": _enumeration("true", "false"),
    "string": _string(),
    "anyURI": _string(),
    "nonEmptyString": _string(1),
    "pathType": _string(1, 260),
    "duration": _duration(),
    "dateTime": _pattern(_DATETIME, "a dateTime (YYYY-MM-DDThh:mm:ss)"),
    "versionType": _pattern(re.compile(r"\d+(\.\d+){1,3}"), r"a version (\d+(\.\d+){1,3})"),
    "ID": _pattern(_NCNAME, "an XML ID (NCName)"),
    "IDREF": _pattern(_NCNAME, "an XML IDREF (NCName)"),
    "logonType": _enumeration("S4U", "Password", "InteractiveToken",
                              "InteractiveTokenOrPassword"),
    "runLevelType": _enumeration("LeastPrivilege", "HighestAvailable"),
    "multipleInstancesPolicyType": _enumeration("Parallel", "Queue", "IgnoreNew",
                                                "StopExisting"),
    # the page lists 0 and 10 as "minimum/maximum integer allowed" (a byte in 0..10)
    "priorityType": _integer(0, 10),
    # restartType's anonymous types: Interval PT1M..P31D, Count an unsignedByte from 1
    "restartInterval": _duration("PT1M", "P31D"),
    "restartCount": _integer(1, 255),
    # idleSettingsType's Duration and WaitTimeout: at least PT1M
    "idleDuration": _duration("PT1M"),
}


# ---- the complex types ------------------------------------------------------------------------
@dataclass(frozen=True)
class El:
    """One child element of a complex type."""

    name: str
    type: str
    min: int = 1    # XSD's minOccurs default
    max: int = 1


@dataclass(frozen=True)
class Complex:
    """`all`: any order, each child at most `max` times; `sequence`: in this order; `choice`:
    any of the children, `occurs` of them in all."""

    model: str
    children: tuple[El, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)   # name -> simple type
    occurs: tuple[int, int] = (1, 1)


_TRIGGER_BASE = (El("Enabled", "boolean", 0), El("StartBoundary", "dateTime", 0),
                 El("EndBoundary", "dateTime", 0), El("Repetition", "repetitionType", 0),
                 El("ExecutionTimeLimit", "duration", 0))

COMPLEX: Mapping[str, Complex] = {
    "taskType": Complex("all", (
        El("RegistrationInfo", "registrationInfoType", 0), El("Triggers", "triggersType", 0),
        El("Settings", "settingsType", 0), El("Data", "dataType", 0),
        El("Principals", "principalsType", 0), El("Actions", "actionsType")),
        # the page says fixed="1.3"; Task Scheduler itself exports and accepts 1.2 (Vista and
        # later), so the checker holds the value to versionType's pattern only
        attributes={"version": "versionType"}),
    "registrationInfoType": Complex("all", tuple(El(name, kind, 0) for name, kind in (
        ("URI", "anyURI"), ("SecurityDescriptor", "string"), ("Source", "string"),
        ("Date", "dateTime"), ("Author", "string"), ("Version", "string"),
        ("Description", "string"), ("Documentation", "string")))),
    "triggersType": Complex("choice", tuple(El(name, kind, 0, 48) for name, kind in (
        ("BootTrigger", "bootTriggerType"), ("RegistrationTrigger", "registrationTriggerType"),
        ("IdleTrigger", "idleTriggerType"), ("TimeTrigger", "timeTriggerType"),
        ("EventTrigger", "eventTriggerType"), ("LogonTrigger", "logonTriggerType"),
        ("SessionStateChangeTrigger", "sessionStateChangeTriggerType"),
        ("CalendarTrigger", "calendarTriggerType"))), occurs=(0, 48)),
    # an extension of triggerBaseType: its sequence first, then UserId and Delay
    "logonTriggerType": Complex("sequence", _TRIGGER_BASE + (
        El("UserId", "nonEmptyString", 0), El("Delay", "duration", 0)),
        attributes={"id": "ID"}),
    "principalsType": Complex("sequence", (El("Principal", "principalType"),)),
    "principalType": Complex("all", (
        El("UserId", "nonEmptyString", 0), El("LogonType", "logonType", 0),
        El("GroupId", "nonEmptyString", 0), El("DisplayName", "string", 0),
        El("RunLevel", "runLevelType", 0), El("ProcessTokenSidType", "processTokenSidType", 0),
        El("RequiredPrivileges", "requiredPrivilegesType", 0)),
        attributes={"id": "ID"}),
    "settingsType": Complex("all", tuple(El(name, kind, 0) for name, kind in (
        ("AllowStartOnDemand", "boolean"), ("RestartOnFailure", "restartType"),
        ("MultipleInstancesPolicy", "multipleInstancesPolicyType"),
        ("DisallowStartIfOnBatteries", "boolean"), ("StopIfGoingOnBatteries", "boolean"),
        ("AllowHardTerminate", "boolean"), ("StartWhenAvailable", "boolean"),
        ("NetworkProfileName", "string"), ("RunOnlyIfNetworkAvailable", "boolean"),
        ("WakeToRun", "boolean"), ("Enabled", "boolean"), ("Hidden", "boolean"),
        ("DeleteExpiredTaskAfter", "duration"), ("IdleSettings", "idleSettingsType"),
        ("NetworkSettings", "networkSettingsType"), ("ExecutionTimeLimit", "duration"),
        ("Priority", "priorityType"), ("RunOnlyIfIdle", "boolean"),
        ("UseUnifiedSchedulingEngine", "boolean"),
        ("DisallowStartOnRemoteAppSession", "boolean")))),
    "idleSettingsType": Complex("all", (
        El("Duration", "idleDuration", 0), El("WaitTimeout", "idleDuration", 0),
        El("StopOnIdleEnd", "boolean", 0), El("RestartOnIdle", "boolean", 0))),
    "restartType": Complex("all", (El("Interval", "restartInterval"),
                                   El("Count", "restartCount"))),
    "actionsType": Complex("choice", tuple(El(name, kind, 0, 32) for name, kind in (
        ("Exec", "execType"), ("ComHandler", "comHandlerType"),
        ("SendEmail", "sendEmailType"), ("ShowMessage", "showMessageType"))),
        attributes={"Context": "IDREF"}, occurs=(1, 32)),
    # an extension of actionBaseType (its id attribute)
    "execType": Complex("all", (
        El("Command", "pathType"), El("Arguments", "string", 0),
        El("WorkingDirectory", "pathType", 0)), attributes={"id": "ID"}),
}

# the elements the Task element's UniqueId constraint selects (their ids are unique together)
_WITH_IDS = ("Principals/Principal", *(f"Triggers/{t}" for t in (
    "BootTrigger", "RegistrationTrigger", "IdleTrigger", "TimeTrigger", "EventTrigger",
    "LogonTrigger", "SessionStateChangeTrigger", "CalendarTrigger")),
    "Actions/Exec", "Actions/ComHandler", "Actions/SendEmail")


def _local(tag: str) -> str | None:
    """The element's name in the task namespace; None when it is in another namespace."""
    return tag[len(NS):] if tag.startswith(NS) else None


def _check(element: ET.Element, type_name: str, where: str, problems: list[str]) -> None:
    simple = SIMPLE.get(type_name)
    if simple is not None:
        if len(element) or element.attrib:
            problems.append(f"{where}: a {type_name} value takes no child elements or "
                            "attributes")
        problem = simple(element.text or "")
        if problem:
            problems.append(f"{where}: {problem}")
        return
    rules = COMPLEX.get(type_name)
    if rules is None:
        problems.append(f"{where}: no rules encoded for {type_name} (the guard never emits "
                        "it; encode its page before emitting it)")
        return
    for name, value in element.attrib.items():
        kind = rules.attributes.get(name)
        if kind is None:
            problems.append(f"{where}: unknown attribute {name!r}")
        elif (problem := SIMPLE[kind](value)) is not None:
            problems.append(f"{where}/@{name}: {problem}")
    texts = [element.text or ""] + [child.tail or "" for child in element]
    if any(t.strip() for t in texts):
        problems.append(f"{where}: text inside {type_name}, which has element content only")
    allowed = {el.name: el for el in rules.children}
    names: list[str] = []
    for child in element:
        name = _local(child.tag)
        if name is None:
            problems.append(f"{where}: {child.tag} is not in the task namespace {NAMESPACE}")
        elif name not in allowed:
            problems.append(f"{where}: unknown element {name!r} (allowed: "
                            f"{', '.join(sorted(allowed))})")
        else:
            names.append(name)
            _check(child, allowed[name].type, f"{where}/{name}", problems)
    counts = Counter(names)
    for el in rules.children:
        if rules.model != "choice" and counts[el.name] < el.min:
            problems.append(f"{where}: the required element {el.name!r} is missing")
        if counts[el.name] > el.max:
            problems.append(f"{where}: {el.name!r} appears {counts[el.name]} times (at most "
                            f"{el.max})")
    if rules.model == "choice" and not rules.occurs[0] <= len(names) <= rules.occurs[1]:
        problems.append(f"{where}: {len(names)} of {', '.join(allowed)} (the schema wants "
                        f"{rules.occurs[0]}..{rules.occurs[1]})")
    if rules.model == "sequence":
        order = [el.name for el in rules.children]
        positions = [order.index(n) for n in names]
        if positions != sorted(positions):
            problems.append(f"{where}: children out of the schema's order ({', '.join(order)})")


def _identity_problems(task: ET.Element) -> list[str]:
    """The Task element's identity constraints: every Principal has an id (PrincipalKey, an
    xs:key), Actions' Context names one of them (ContextKeyRef), and the ids of principals,
    triggers and actions are unique together (UniqueId)."""
    problems: list[str] = []
    principals = task.findall(f"{NS}Principals/{NS}Principal")
    keys = [p.get("id") for p in principals]
    if None in keys:
        problems.append("Principals/Principal: no id attribute (the PrincipalKey key needs one)")
    for actions in task.findall(f"{NS}Actions"):
        context = actions.get("Context")
        if context is not None and context not in keys:
            problems.append(f"Actions/@Context {context!r} names no Principal id "
                            f"(ids: {', '.join(str(k) for k in keys)})")
    ids = [e.get("id") for path in _WITH_IDS
           for e in task.findall("/".join(NS + part for part in path.split("/")))]
    repeated = sorted(i for i, n in Counter(i for i in ids if i is not None).items() if n > 1)
    if repeated:
        problems.append(f"ids used twice (UniqueId): {', '.join(repeated)}")
    return problems


def task_problems(root: ET.Element) -> list[str]:
    """What in this task definition breaks the schema's rules (empty: none found)."""
    if root.tag != NS + "Task":
        return [f"the root element is {root.tag}, not Task in the namespace {NAMESPACE}"]
    problems: list[str] = []
    _check(root, "taskType", "Task", problems)
    return problems + _identity_problems(root)


def parse_task_file(data: bytes) -> ET.Element:
    """The bytes schtasks reads: UTF-16 little-endian with a byte-order mark, declared as
    UTF-16; parsed from the decoded text, and the same tree from the bytes (as expat reads
    them, by the mark)."""
    assert data[:2] == codecs.BOM_UTF16_LE, f"no UTF-16 (LE) byte-order mark: {data[:4]!r}"
    text = data[2:].decode("utf-16-le")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\r\n')
    assert "\ufeff" not in text
    root = ET.fromstring(text)
    assert ET.tostring(ET.fromstring(data)) == ET.tostring(root)
    return root


# ---- Windows command lines: CommandLineToArgvW's rules ----------------------------------------
def split_windows(line: str) -> list[str]:
    """Split the arguments part of a command line as CommandLineToArgvW (and the C runtime)
    do: blanks separate words outside quotes; 2n backslashes before a quote are n backslashes
    and the quote opens or closes a quoted part; 2n+1 are n and a literal quote; backslashes
    before anything else are literal; "" inside a quoted part is a literal quote."""
    words: list[str] = []
    word: list[str] = []
    started = quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            j = i
            while j < len(line) and line[j] == "\\":
                j += 1
            if j < len(line) and line[j] == '"':
                word.append("\\" * ((j - i) // 2))
                if (j - i) % 2:
                    word.append('"')
                    j += 1
            else:
                word.append("\\" * (j - i))
            started, i = True, j
        elif c == '"':
            if quoted and line[i + 1:i + 2] == '"':
                word.append('"')
                i += 2
            else:
                quoted = not quoted
                i += 1
            started = True
        elif c in " \t" and not quoted:
            if started:
                words.append("".join(word))
                word, started = [], False
            i += 1
        else:
            word.append(c)
            started, i = True, i + 1
    if started:
        words.append("".join(word))
    return words


@pytest.mark.parametrize(("line", "words"), [
    # the examples of Microsoft's "Parsing C command-line arguments"
    ('"a b c" d e', ["a b c", "d", "e"]),
    (r'"ab\"c" "\\" d', ['ab"c', "\\", "d"]),
    (r'a\\\b d"e f"g h', [r"a\\\b", "de fg", "h"]),
    (r'a\\\"b c d', [r"a\"b", "c", "d"]),
    (r'a\\\\"b c" d e', [r"a\\b c", "d", "e"]),
    ('a"b"" c d', ['ab" c d']),
    ('  ""  x\t', ["", "x"]),
])
def test_the_argument_splitter_follows_the_documented_rules(line, words):
    assert split_windows(line) == words


def test_the_argument_splitter_undoes_list2cmdline():
    words = ["", "a b", "tail\\", "q\"uote", "tab\there", "\\\\server\\share\\", '"', 'x\\"',
             "C:\\Users\\Zoë O'Brien & Co\\<lab>\\"]
    assert split_windows(subprocess.list2cmdline(words)) == words


# ---- the rendered task --------------------------------------------------------------------------
PLAIN = logontask.TaskSpec(
    pythonw=r"C:\Users\ana\mlflow-sync-guard\.venv\Scripts\pythonw.exe",
    config=r"C:\Users\ana\AppData\Roaming\mlflow-guard\config.yaml",
    user=r"LAB-PC\ana", workdir=r"C:\Users\ana\AppData\Local\mlflow-guard")

AWKWARD = logontask.TaskSpec(
    pythonw="C:\\Users\\Zoë O'Brien & Co\\lab <venv>\\Scripts\\pythonw.exe",
    config="C:\\Users\\Zoë O'Brien & Co\\Synology \"Drive\" & <more>\\guard config.yaml",
    user="ZOË-PC\\Zoë O'Brien", workdir="C:\\Users\\Zoë O'Brien & Co\\état\\mlflow-guard")

TRAILING = logontask.TaskSpec(   # a config path that ends in backslashes before the quote
    pythonw=r"C:\Python 3\pythonw.exe", config="D:\\odd folder\\\\", user="ana",
    workdir=r"D:\odd folder")


def rendered(spec: logontask.TaskSpec) -> ET.Element:
    return parse_task_file(logontask.encode(logontask.render(spec)))


def text_of(root: ET.Element, path: str) -> str | None:
    element = root.find("/".join(NS + part for part in path.split("/")))
    return None if element is None else element.text


def _find(root: ET.Element, path: str) -> ET.Element:
    element = root.find("/".join(NS + part for part in path.split("/")))
    assert element is not None, path
    return element


@pytest.mark.parametrize("spec", [PLAIN, AWKWARD, TRAILING], ids=["plain", "awkward", "trailing"])
def test_the_rendered_task_follows_the_schema(spec):
    root = rendered(spec)
    assert task_problems(root) == []
    assert root.get("version") == "1.2"


@pytest.mark.parametrize("spec", [PLAIN, AWKWARD, TRAILING], ids=["plain", "awkward", "trailing"])
def test_paths_and_names_come_back_exactly(spec):
    """Spaces, '&', '<', quotes and non-ASCII survive the XML, and the Arguments split back (as
    Windows splits them for pythonw) into exactly the daemon's command line."""
    root = rendered(spec)
    assert text_of(root, "Actions/Exec/Command") == spec.pythonw
    assert text_of(root, "Actions/Exec/WorkingDirectory") == spec.workdir
    assert text_of(root, "Principals/Principal/UserId") == spec.user
    assert text_of(root, "Triggers/LogonTrigger/UserId") == spec.user
    arguments = text_of(root, "Actions/Exec/Arguments")
    assert arguments is not None
    expected = ["-m", "guard.cli", "run", "--config", spec.config, "--wait-for-store",
                "--relaunch"]
    assert split_windows(arguments) == expected
    assert arguments == subprocess.list2cmdline(expected)


def test_the_task_is_what_the_issue_asks_for():
    """At the user's logon, with the user's own token (no password), least privilege, no time
    limit, not stopped on batteries, pythonw waiting for the store and relaunching the daemon."""
    root = rendered(PLAIN)
    assert root.tag == NS + "Task"
    triggers = root.find(f"{NS}Triggers")
    assert triggers is not None and [_local(t.tag) for t in triggers] == ["LogonTrigger"]
    assert text_of(root, "Triggers/LogonTrigger/UserId") == PLAIN.user
    assert text_of(root, "Triggers/LogonTrigger/Enabled") == "true"
    principal = root.find(f"{NS}Principals/{NS}Principal")
    assert principal is not None
    assert text_of(root, "Principals/Principal/LogonType") == "InteractiveToken"
    assert text_of(root, "Principals/Principal/RunLevel") == "LeastPrivilege"
    assert "Password" not in logontask.render(PLAIN)
    actions = root.find(f"{NS}Actions")
    assert actions is not None and actions.get("Context") == principal.get("id")
    settings = {_local(e.tag): e.text for e in _find(root, "Settings")}
    assert settings["ExecutionTimeLimit"] == "PT0S"    # the default PT72H would end the guard
    assert settings["DisallowStartIfOnBatteries"] == "false"
    assert settings["StopIfGoingOnBatteries"] == "false"
    assert settings["MultipleInstancesPolicy"] == "IgnoreNew"
    assert settings["Enabled"] == "true" and settings["AllowStartOnDemand"] == "true"
    command = text_of(root, "Actions/Exec/Command")
    assert command is not None and command.lower().endswith("pythonw.exe")
    arguments = split_windows(text_of(root, "Actions/Exec/Arguments") or "")
    assert arguments[:3] == ["-m", "guard.cli", "run"]
    assert "--wait-for-store" in arguments and "--relaunch" in arguments
    assert len(root.findall(f"{NS}Actions/{NS}Exec")) == 1


# ---- the checker rejects what breaks the rules --------------------------------------------------
# A valid task of the same shape as ours, written by hand (not by the renderer): the checker's
# own tests do not depend on what logontask emits.
SAMPLE = f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="{NAMESPACE}">
  <RegistrationInfo><Author>LAB\\ana</Author><URI>\\sample</URI></RegistrationInfo>
  <Triggers>
    <LogonTrigger id="logon"><Enabled>true</Enabled><UserId>LAB\\ana</UserId></LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Me"><UserId>LAB\\ana</UserId><LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel></Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>Queue</MultipleInstancesPolicy>
    <Hidden>false</Hidden>
    <IdleSettings><Duration>PT10M</Duration><StopOnIdleEnd>true</StopOnIdleEnd></IdleSettings>
    <ExecutionTimeLimit>PT72H</ExecutionTimeLimit>
    <StopIfGoingOnBatteries>true</StopIfGoingOnBatteries>
    <Priority>7</Priority>
    <RestartOnFailure><Count>255</Count><Interval>P31D</Interval></RestartOnFailure>
  </Settings>
  <Actions Context="Me">
    <Exec><Command>C:\\Windows\\notepad.exe</Command></Exec>
  </Actions>
</Task>
"""


def test_the_checker_passes_a_valid_task():
    assert task_problems(ET.fromstring(SAMPLE)) == []


def _drop(path: str, name: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        parent = _find(root, path)
        parent.remove(_find(parent, name))
    return change


def _set(path: str, value: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        _find(root, path).text = value
    return change


def _add(path: str, name: str, value: str = "x") -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        ET.SubElement(_find(root, path), NS + name).text = value
    return change


def _move_user_id_first(root: ET.Element) -> None:
    trigger = _find(root, "Triggers/LogonTrigger")
    user = _find(trigger, "UserId")
    trigger.remove(user)
    trigger.insert(0, user)


def _context(value: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        _find(root, "Actions").set("Context", value)
    return change


def _rename_root(root: ET.Element) -> None:
    root.tag = "{http://example.org/not-task}Task"


def _version(value: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        root.set("version", value)
    return change


def _attribute(path: str, name: str, value: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        _find(root, path).set(name, value)
    return change


def _drop_principal_id(root: ET.Element) -> None:
    del _find(root, "Principals/Principal").attrib["id"]


@pytest.mark.parametrize(("change", "complaint"), [
    (_drop("Settings/RestartOnFailure", "Count"), "'Count' is missing"),
    (_add("Settings", "Bogus"), "unknown element 'Bogus'"),
    (_set("Settings/RestartOnFailure/Count", "0"), "Count: 0 is outside 1..255"),
    (_set("Settings/RestartOnFailure/Count", "256"), "outside 1..255"),
    (_drop("Settings/RestartOnFailure", "Interval"), "'Interval' is missing"),
    (_set("Settings/RestartOnFailure/Interval", "PT30S"), "below the minimum PT1M"),
    (_set("Settings/RestartOnFailure/Interval", "P32D"), "above the maximum P31D"),
    (_set("Settings/ExecutionTimeLimit", "forever"), "is not a duration"),
    (_set("Settings/ExecutionTimeLimit", "PT"), "is not a duration"),
    (_set("Settings/Priority", "11"), "outside 0..10"),
    (_set("Settings/StopIfGoingOnBatteries", "no"), "not one of true, false"),
    (_set("Settings/MultipleInstancesPolicy", "One"), "not one of Parallel"),
    (_set("Principals/Principal/LogonType", "Interactive"), "not one of S4U"),
    (_set("Principals/Principal/RunLevel", "Highest"), "not one of LeastPrivilege"),
    (_drop("Actions/Exec", "Command"), "'Command' is missing"),
    (_set("Actions/Exec/Command", ""), "non-empty"),
    (_set("Actions/Exec/Command", "C:\\" + "x" * 260), "above the maximum 260"),
    (_drop("Actions", "Exec"), "the schema wants 1..32"),
    (_add("Settings", "Hidden", "false"), "'Hidden' appears 2 times"),
    (_move_user_id_first, "out of the schema's order"),
    (_context("Someone"), "Context 'Someone' names no Principal id"),
    (_drop_principal_id, "no id attribute"),
    (_attribute("Triggers/LogonTrigger", "id", "Me"), "ids used twice (UniqueId): Me"),
    (_attribute("Actions/Exec", "priority", "1"), "unknown attribute 'priority'"),
    (_version("one"), "is not a version"),
    (_add("Triggers/LogonTrigger", "Repetition"), "no rules encoded for repetitionType"),
    (_rename_root, "not Task in the namespace"),
])
def test_the_checker_rejects_what_breaks_the_rules(change, complaint):
    root = ET.fromstring(SAMPLE)
    change(root)
    problems = task_problems(root)
    assert any(complaint in p for p in problems), problems


def test_the_checker_rejects_an_element_outside_the_namespace():
    text = SAMPLE.replace("<Hidden>false</Hidden>", '<Hidden xmlns="urn:other">false</Hidden>')
    problems = task_problems(ET.fromstring(text))
    assert any("not in the task namespace" in p for p in problems), problems


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT0S", 0), ("PT1M", 60), ("P31D", 31 * 86400), ("PT72H", 72 * 3600),
    ("P1DT2H3M4.5S", 86400 + 7200 + 180 + 4.5), ("P1Y", 365 * 86400), ("-PT1M", -60),
    ("P", None), ("PT", None), ("P1DT", None), ("1M", None), ("PT1H30", None)])
def test_durations_are_read_as_the_schema_writes_them(text, seconds):
    assert duration_seconds(text) == seconds
