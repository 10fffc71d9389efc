#!/bin/sh
# meson install script: copy DIR/SAMPLE to DIR/CONF unless CONF exists.
# DIR is absolute; $DESTDIR (set by `meson install --destdir`) is prepended.
set -eu
dir="${DESTDIR:-}$1"
if [ ! -e "$dir/$3" ]; then
	cp "$dir/$2" "$dir/$3"
	chmod 0644 "$dir/$3"
	echo "Installing $dir/$3 (from $2)"
else
	echo "Keeping $dir/$3 (the new default is $2)"
fi
