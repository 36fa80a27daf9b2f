"""Every command and PromQL expression the runbooks and docs tell a reader to run, extracted and checked.

Sources: runbooks/*.md and docs/*.md (all of them, whoever adds a file). Extracted:
  - fenced blocks: ```promql blocks are PromQL (one expression per blank-line-separated chunk, `#` lines dropped);
    shell blocks (sh, bash, console, or no language) are split into commands (backslash continuations joined,
    comments dropped, split at | && || ; and inside $(...)); the kubectl ones are kept, and the `query=` of a curl
    to a Prometheus /api/v1/query is PromQL;
  - inline code spans: those starting with `kubectl ` are commands; those naming one of our metric families
    (http_, sremini_, kube_, namespace_job:, container_, up) that read as an expression are PromQL.
Checks:
  kubectl  each command runs through the bundled kubectl's own parser, against a server that is not there
           (--server pointing at a closed loopback port, an empty kubeconfig): an unknown flag, shorthand, missing
           flag argument or unknown subcommand fails before any connection; anything else (connection refused, or
           success for what needs no server, such as --dry-run=client or kustomize) is a pass for the grammar. Resource types (deploy/x, pods,svc ...) are checked against KINDS below, which is
           kubectl's own name table for the kinds we use (offline kubectl cannot discover them). <placeholders>
           become a sample name first. `kubectl logs` with a selector (-l, --selector) must say --tail=-1: with a
           selector kubectl shows the last 10 lines of each pod, --since or not, and a grep behind it then finds
           nothing that happened before them.
  promql   each expression runs as `promtool query instant PROM EXPR` (parse and evaluation); a non-zero exit
           fails. Run against the burn drill's Prometheus (alerts/drill.py calls promql_check()), where every
           series of the binary, the recording rules and the kube-state-metrics stand-in exist.
  tenant   no expression, and no query of the Grafana dashboard (tools/srekit/dashboard.py), writes a namespace into
           a matcher (a Grafana variable such as $namespace is not one): a copy of the kit in another namespace
           must work from the same text.

  python3 -m srekit.doccheck list [ROOT]
  python3 -m srekit.doccheck kubectl [ROOT]
  python3 -m srekit.doccheck promql --prom URL [ROOT]
  python3 -m srekit.doccheck tenant [ROOT]
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys

# kubectl's names for the resource types the docs use (singular, plural, short names as `kubectl api-resources`
# of Kubernetes 1.32 prints them), plus the prometheus-operator kinds whose CRDs the kit ships objects of.
KINDS = {
    "pods": ["pod", "po"], "deployments": ["deployment", "deploy"], "replicasets": ["replicaset", "rs"],
    "services": ["service", "svc"], "horizontalpodautoscalers": ["horizontalpodautoscaler", "hpa"],
    "poddisruptionbudgets": ["poddisruptionbudget", "pdb"], "events": ["event", "ev"],
    "endpointslices": ["endpointslice"], "endpoints": ["ep"], "nodes": ["node", "no"],
    "namespaces": ["namespace", "ns"], "ingresses": ["ingress", "ing"],
    "networkpolicies": ["networkpolicy", "netpol"], "secrets": ["secret"], "configmaps": ["configmap", "cm"],
    "serviceaccounts": ["serviceaccount", "sa"], "resourcequotas": ["resourcequota", "quota"],
    "limitranges": ["limitrange", "limits"],
    "servicemonitors": ["servicemonitor", "smon"], "prometheuses": ["prometheus", "prom"],
    "prometheusrules": ["prometheusrule", "promrule"], "alertmanagerconfigs": ["alertmanagerconfig", "amcfg"],
    "alertmanagers": ["alertmanager", "am"],
}
KIND_NAMES = {n for k, v in KINDS.items() for n in [k] + v}
# Verbs whose first positional argument is TYPE[/NAME] (or TYPE,TYPE). logs, port-forward, exec take POD or TYPE/NAME.
TYPED = {"get", "describe", "delete", "scale", "patch", "edit", "label", "annotate", "top", "rollout", "set",
         "autoscale", "expose", "wait"}
POD_OR_TYPED = {"logs", "port-forward", "exec", "attach"}
METRIC = re.compile(r"\b(http_\w+|sremini_\w+|kube_\w+|namespace_job:[\w:]+|container_\w+|up)\b")
PLACEHOLDER = re.compile(r"<[^<>\n]+>")
SAMPLE = "sre-mini-5f7d8c9b6d-x2k4p"
DEAD = ["--server=https://127.0.0.1:9", "--request-timeout=2s", "--insecure-skip-tls-verify"]


def sources(root):
    files = sorted(glob.glob(os.path.join(root, "runbooks", "*.md")) + glob.glob(os.path.join(root, "docs", "*.md")))
    return [f for f in files if os.path.isfile(f)]


def _split_commands(text):
    """Shell text -> simple commands (strings), pipes/lists and $(...) taken apart, comments dropped."""
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if buf:
            line = buf + " " + line.lstrip()
            buf = ""
        if line.endswith("\\"):
            buf = line[:-1]
            continue
        lines.append(line)
    out = []
    for line in lines:
        # drop comments: a # outside quotes that starts a word
        cut, q = None, None
        for i, c in enumerate(line):
            if q:
                if c == q:
                    q = None
            elif c in "'\"":
                q = c
            elif c == "#" and (i == 0 or line[i - 1].isspace()):
                cut = i
                break
        line = line[:cut] if cut is not None else line
        subs = re.findall(r"\$\(([^()]*)\)", line)
        line = re.sub(r"\$\(([^()]*)\)", "X", line)
        for part in subs + [line]:
            for cmd in _split_outside_quotes(part):
                cmd = cmd.strip()
                if cmd:
                    out.append(cmd)
    return out


def _split_outside_quotes(s):
    parts, cur, q, i = [], "", None, 0
    while i < len(s):
        c = s[i]
        if q:
            cur += c
            if c == q:
                q = None
        elif c in "'\"":
            q = c
            cur += c
        elif s.startswith(("&&", "||"), i):
            parts.append(cur)
            cur = ""
            i += 1
        elif c in "|;&":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def _is_promql_span(s):
    if s.startswith(("kubectl", "curl", "/", "http", "python", "bash", "cargo", "git ")):
        return False
    if not METRIC.search(s):
        return False
    return bool(re.fullmatch(r"[A-Za-z_:][\w:]*", s)) or "(" in s or bool(re.search(r"\{[^}]*=", s))


def extract(root):
    """[(file, line, kind, text)] with kind 'kubectl' or 'promql'."""
    items = []
    for path in sources(root):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
            if m:
                fence, lang, start = m.group(1), m.group(2).lower(), i + 1
                j = start
                while j < len(lines) and not lines[j].strip().startswith(fence):
                    j += 1
                body = lines[start:j]
                if lang == "promql":
                    chunk, at = [], start
                    for k, ln in enumerate(body + [""]):
                        if ln.strip() and not ln.strip().startswith("#"):
                            if not chunk:
                                at = start + k
                            chunk.append(ln)
                        elif not ln.strip() and chunk:
                            items.append((rel, at + 1, "promql", "\n".join(chunk)))
                            chunk = []
                elif lang in ("", "sh", "bash", "shell", "console"):
                    for cmd in _split_commands("\n".join(body)):
                        items += _from_command(rel, start + 1, cmd)
                i = j + 1
                continue
            for span in re.findall(r"`([^`\n]+)`", lines[i]):
                span = span.strip()
                if span.startswith("kubectl "):
                    for cmd in _split_commands(span):
                        items += _from_command(rel, i + 1, cmd)
                elif _is_promql_span(span):
                    items.append((rel, i + 1, "promql", span))
            i += 1
    return items


def _from_command(rel, line, cmd):
    words = cmd.split()
    if not words:
        return []
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words and words[0] == "kubectl":
        return [(rel, line, "kubectl", " ".join(words))]
    if words and words[0] == "curl" and "/api/v1/query" in cmd:
        m = re.search(r"""--data-urlencode\s+(['"])query=(.*?)\1""", cmd)
        if m:
            return [(rel, line, "promql", m.group(2))]
    return []


# ---------------------------------------------------------------------------------------------------- kubectl ----
_help_cache = {}


def _help(path):
    key = tuple(path)
    if key not in _help_cache:
        r = subprocess.run(["kubectl", *path, "--help"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "KUBECONFIG": "/dev/null"})
        _help_cache[key] = (r.returncode, r.stdout + r.stderr)
    return _help_cache[key]


def _subcommands(text):
    cmds, on = set(), False
    for ln in text.splitlines():
        if re.match(r"^[A-Za-z ]*Commands[^:]*:\s*$", ln) or ln.startswith("Available Commands:"):
            on = True
            continue
        if on:
            m = re.match(r"^\s{2,}([a-z][\w-]*)\s", ln)
            if m:
                cmds.add(m.group(1))
            elif ln.strip() and not ln.startswith(" "):
                on = False
    return cmds


def check_kubectl(cmd):
    """None when kubectl's parser accepts the command, else a reason."""
    text = PLACEHOLDER.sub(SAMPLE, cmd)
    try:
        argv = shlex.split(text)
    except ValueError as e:
        return f"cannot split into words: {e}"
    args = argv[1:]
    # the verb path: kubectl's own subcommand lists
    path, rest, k = [], [], 0
    positional = list(args)
    while k < len(positional):
        a = positional[k]
        if a.startswith("-"):
            # skip a flag and, for the namespace-style flags that take a separate value, its value
            if a in ("-n", "--namespace", "--context", "--kubeconfig", "-s", "--server", "-l", "--selector", "-c",
                     "--container", "--field-selector", "-o", "--output") and "=" not in a:
                k += 2
            else:
                k += 1
            continue
        _, out = _help(path)
        subs = _subcommands(out)
        if a in subs:
            path.append(a)
            k += 1
            continue
        rest = positional[k:]
        break
    if not path:
        return "no kubectl subcommand found"
    r = subprocess.run(["kubectl", *args, *DEAD], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "KUBECONFIG": "/dev/null"}, stdin=subprocess.DEVNULL)
    err = (r.stderr or "") + (r.stdout or "")
    for bad in ("unknown flag", "unknown shorthand flag", "flag needs an argument", "unknown command",
                "invalid argument", "required flag", "accepts ", "error: required resource not specified",
                "must specify", "invalid resource name", "doesn't have a resource type"):
        if bad in err:
            return f"kubectl rejects it: {err.strip().splitlines()[0]}"
    verb = path[0]
    if verb == "logs" and any(a in ("-l", "--selector") or a.startswith(("-l=", "--selector=")) or
                              (a.startswith("-l") and not a.startswith("--")) for a in args):
        tails = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--tail"]
        tails += [a.split("=", 1)[1] for a in args if a.startswith("--tail=")]
        if tails != ["-1"]:
            return "kubectl logs with a selector shows 10 lines per pod unless --tail=-1 (the whole --since window)"
    if verb in TYPED | POD_OR_TYPED:
        # the first positional after the verb path (skipping flag values taken by the flags we know take one)
        pos, skip = [], False
        for a in args[len(path):] if args[:len(path)] == path else rest:
            if skip:
                skip = False
                continue
            if a.startswith("-"):
                if "=" not in a and a in ("-n", "--namespace", "-l", "--selector", "-c", "--container", "-o",
                                          "--output", "-p", "--patch", "--sort-by", "--since", "--timeout",
                                          "--field-selector", "--max-log-requests", "--replicas", "--type"):
                    skip = True
                continue
            pos.append(a)
        targets = pos[:1] if verb not in ("get", "describe", "delete") else pos
        for t in targets:
            if verb in POD_OR_TYPED and "/" not in t:
                continue  # a pod name
            if t == SAMPLE or (verb in ("get", "describe", "delete") and "/" not in t and t != targets[0]):
                continue  # a NAME after TYPE
            for typ in (x.split("/")[0] for x in t.split(",")):
                if typ not in KIND_NAMES:
                    return f"resource type {typ!r} is not one of kubectl's names for the kinds in use ({t!r})"
    return None


# ----------------------------------------------------------------------------------------------------- promql ----
def promql_check(prom, root):
    """[(file, line, expr, error)] for every extracted PromQL expression that promtool cannot run against PROM."""
    failures, n = [], 0
    for rel, line, kind, text in extract(root):
        if kind != "promql":
            continue
        n += 1
        r = subprocess.run(["promtool", "query", "instant", prom, text], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            failures.append((rel, line, text, (r.stderr or r.stdout).strip().splitlines()[-1:]))
    return n, failures


# ----------------------------------------------------------------------------------------------------- tenant ----
NAMESPACE_MATCHER = re.compile(r'\bnamespace\s*(?:=~|!~|!=|=)\s*"([^"]*)"')


def tenant_check(root):
    """(count, [(where, expr)]) of the PromQL of runbooks/ and docs/ and the dashboard's queries that name a namespace."""
    from . import dashboard

    exprs = [(f"{rel}:{line}", text) for rel, line, kind, text in extract(root) if kind == "promql"]
    exprs += [(f"dashboard panel {title!r} {ref}", expr) for title, ref, expr in dashboard.queries(dashboard.render())]
    bad = [(where, e) for where, e in exprs if any("$" not in v for v in NAMESPACE_MATCHER.findall(e))]
    return len(exprs), bad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("list", "kubectl", "promql", "tenant"):
        s = sub.add_parser(name)
        s.add_argument("root", nargs="?", default=".")
        if name == "promql":
            s.add_argument("--prom", required=True)
    a = p.parse_args(argv)
    items = extract(a.root)
    if a.cmd == "list":
        for rel, line, kind, text in items:
            print(f"{rel}:{line}: {kind}: {text}")
        return 0
    if a.cmd == "kubectl":
        cmds = [(rel, line, text) for rel, line, kind, text in items if kind == "kubectl"]
        bad = 0
        for rel, line, text in cmds:
            why = check_kubectl(text)
            if why:
                bad += 1
                print(f"FAIL: {rel}:{line}: {text}\n      {why}", file=sys.stderr)
        print(f"doccheck kubectl: {len(cmds)} kubectl commands from {len(sources(a.root))} files "
              f"(runbooks/*.md, docs/*.md), {bad} failed")
        return 1 if bad else 0
    if a.cmd == "tenant":
        n, bad = tenant_check(a.root)
        for where, text in bad:
            print(f"FAIL: {where}: names a namespace: {text}", file=sys.stderr)
        print(f"doccheck tenant: {n} PromQL expressions of runbooks/, docs/ and the dashboard, {len(bad)} name a namespace")
        return 1 if bad else 0
    n, failures = promql_check(a.prom, a.root)
    for rel, line, text, err in failures:
        print(f"FAIL: {rel}:{line}: {text}\n      {err}", file=sys.stderr)
    print(f"doccheck promql: {n} PromQL expressions from {len(sources(a.root))} files ran against {a.prom}, "
          f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
