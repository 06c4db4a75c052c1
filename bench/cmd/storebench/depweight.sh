#!/usr/bin/env bash
# depweight.sh: the dependency weight each storebench engine would add to an
# embedder. For each engine, a throwaway module in a temp dir holds a tiny
# program that opens a store, writes one record durably and closes it; the
# script prints the modules `go mod graph` reaches from the engine, the
# modules actually compiled into the binary (go list -deps), and the binary
# size (default build, and stripped with -ldflags=-s -w).
#
#   bash bench/cmd/storebench/depweight.sh
set -euo pipefail

BBOLT=${BBOLT:-go.etcd.io/bbolt@v1.4.3}
PEBBLE=${PEBBLE:-github.com/cockroachdb/pebble@v1.1.5}

work=$(mktemp -d "${TMPDIR:-/tmp}/depweight-XXXXXX")
trap 'rm -rf "$work"' EXIT

tiny() { # name module@version(or -) source
	local name=$1 mod=$2 src=$3 d="$work/$1"
	mkdir -p "$d"
	printf '%s\n' "$src" >"$d/main.go"
	(
		cd "$d"
		go mod init example.com/"$name" >/dev/null 2>&1
		if [ "$mod" != - ]; then
			go get "$mod" >/dev/null 2>&1
		fi
		go mod tidy >/dev/null 2>&1
		# Every module@version node in the graph except the main module and
		# the go/toolchain pseudo-nodes, i.e. what the engine pulls in.
		graph=$(go mod graph | tr ' ' '\n' | { grep -v -e '^example.com/' -e '^go@' -e '^toolchain@' || true; } | sort -u)
		versions=$(printf '%s' "$graph" | grep -c . || true)
		paths=$(printf '%s' "$graph" | sed 's/@.*//' | sort -u | grep -c . || true)
		linked=$(go list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}' . | sort -u | grep -c . || true)
		go build -o bin . && full=$(stat -c %s bin)
		go build -ldflags='-s -w' -o bin . && stripped=$(stat -c %s bin)
		printf '| %s | %s | %s | %s | %s | %.1f MiB | %.1f MiB |\n' "$name" "$mod" "$paths" "$versions" "$linked" \
			"$(echo "$full / 1048576" | bc -l)" "$(echo "$stripped / 1048576" | bc -l)"
	)
}

echo "| program | module | modules in go mod graph (paths) | (path@version nodes) | modules linked | binary | stripped |"
echo "|---|---|---:|---:|---:|---:|---:|"

tiny applog - 'package main

import (
	"os"
	"syscall"
)

func main() {
	f, err := os.OpenFile(os.TempDir()+"/depweight.log", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteAt([]byte("key=value"), 0); err != nil {
		panic(err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		panic(err)
	}
	f.Close()
}'

tiny bbolt "$BBOLT" 'package main

import (
	"os"

	bolt "go.etcd.io/bbolt"
)

func main() {
	db, err := bolt.Open(os.TempDir()+"/depweight.db", 0o600, nil)
	if err != nil {
		panic(err)
	}
	defer os.Remove(db.Path())
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("key"), []byte("value"))
	})
	if err != nil {
		panic(err)
	}
	db.Close()
}'

tiny pebble "$PEBBLE" 'package main

import (
	"os"

	"github.com/cockroachdb/pebble"
)

func main() {
	dir, err := os.MkdirTemp("", "depweight")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		panic(err)
	}
	if err := db.Set([]byte("key"), []byte("value"), pebble.Sync); err != nil {
		panic(err)
	}
	db.Close()
}'
