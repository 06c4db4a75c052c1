// Package doccheck holds the repository's documentation checks (its
// tests): every link in README.md and docs/ resolves inside the
// repository, every repository path they name exists, they cite nothing
// a user of the repository does not have, and go.mod asks embedders for
// a minor Go version only.
package doccheck
