// This directory holds npm packages for the browser tests, not Go code.
// A module of its own keeps `go test ./...` out of node_modules.
module github.com/busbar/busbar/internal/browser/js

go 1.26.8
