"""TEST DOUBLE support: pflag-like parsing of talosctl command lines, shared by cli.py (the
node-facing commands) and gen.py (the offline config commands), so both reject unknown flags
and malformed values with the texts real talosctl (cobra/pflag) prints."""

from __future__ import annotations


class UsageError(Exception):
    """A command-line error: printed bare (no 'Error:' prefix), then a blank line and usage; rc 1."""


class Flag(object):
    def __init__(self, name, short=None, kind='str', default=None):
        self.name, self.short, self.kind, self.default = name, short, kind, default


def parse_flags(args, flags):
    """Parse ``args`` like cobra/pflag: --name=v, --name v, -s v, bool flags, repeatable arrays."""
    by_long = dict((f.name, f) for f in flags)
    by_short = dict((f.short, f) for f in flags if f.short)
    opts = dict((f.name, list(f.default or []) if f.kind in ('array', 'slice') else f.default) for f in flags)
    seen = set()
    positionals = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == '--':
            positionals.extend(args[i + 1:])
            break
        if arg.startswith('--'):
            name, eq, value = arg[2:].partition('=')
            flag = by_long.get(name)
            if flag is None:
                raise UsageError('unknown flag: --%s' % name)
        elif arg.startswith('-') and len(arg) > 1:
            short = arg[1]
            flag = by_short.get(short)
            if flag is None:
                raise UsageError("unknown shorthand flag: '%s' in %s" % (short, arg))
            rest = arg[2:]
            eq = '=' if rest else ''
            value = rest[1:] if rest.startswith('=') else rest
        else:
            positionals.append(arg)
            i += 1
            continue
        if flag.kind == 'bool':
            if eq:
                if value.lower() not in ('true', 'false', '1', '0', 't', 'f'):
                    raise UsageError('invalid argument "%s" for "--%s" flag: strconv.ParseBool: parsing "%s": '
                                     'invalid syntax' % (value, flag.name, value))
                opts[flag.name] = value.lower() in ('true', '1', 't')
            else:
                opts[flag.name] = True
            seen.add(flag.name)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise UsageError('flag needs an argument: --%s' % flag.name)
            value = args[i + 1]
            i += 1
        i += 1
        if flag.kind == 'array':
            opts[flag.name].append(value)
        elif flag.kind == 'slice':
            if flag.name not in seen:
                opts[flag.name] = []
            opts[flag.name].extend(v for v in value.split(',') if v)
        else:
            opts[flag.name] = value
        seen.add(flag.name)
    return opts, positionals, seen
