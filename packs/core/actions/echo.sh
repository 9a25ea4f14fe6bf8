#!/bin/sh
# core.echo: print the message. Parameters arrive on stdin as dotenv: message='<text>', the
# value single-quoted and each ' in it written '\'', so sourcing the document sets $message
# and expands nothing. POSIX sh (the first line): dash starts in about half bash's time.
message=''
. /dev/stdin
printf '%s\n' "$message"
