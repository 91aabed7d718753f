#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and talk to it like a person would.

usage: ptydrive.py TRANSCRIPT -- CMD [ARGS...]
Steps come from the environment, PTY_STEPS: lines "expect TEXT" (wait, up
to 30 s, for TEXT in the output) and "send TEXT" (type TEXT and Enter).
Everything the command wrote to the terminal goes to TRANSCRIPT; the exit
status is the command's (124 if a step timed out)."""
import os, pty, select, sys, time

def main():
    transcript = sys.argv[1]
    cmd = sys.argv[sys.argv.index('--') + 1:]
    steps = [l.split(' ', 1) for l in os.environ.get('PTY_STEPS', '').split('\n') if l]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    out = b''
    rc = None

    def pump(timeout):
        nonlocal out
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
        return True

    seen = 0
    for kind, text in steps:
        if kind == 'expect':
            deadline = time.time() + 30
            while text.encode() not in out[seen:]:
                if time.time() > deadline or not pump(0.2):
                    if text.encode() in out[seen:]:
                        break
                    open(transcript, 'wb').write(out)
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    sys.exit(124)
            seen = out.index(text.encode(), seen) + len(text)
        elif kind == 'send':
            os.write(fd, text.encode() + b'\n')
    while pump(30):
        pass
    _, st = os.waitpid(pid, 0)
    open(transcript, 'wb').write(out)
    sys.exit(os.waitstatus_to_exitcode(st) if hasattr(os, 'waitstatus_to_exitcode')
             else (st >> 8))

main()
