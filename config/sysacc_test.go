package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/config"
)

// TestSystemAccountAndPidFile: system_account (alias system) names the
// system account, $SYS without it, none with no_system_account; pid_file
// (alias pidfile) is read; both need a restart.
func TestSystemAccountAndPidFile(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", "$SYS"},
		{"system_account: SYS\naccounts { SYS {} }", "SYS"},
		{"system: ADMIN", "ADMIN"},
		{"no_system_account: true", ""},
		{"no_sys_acc: true", ""},
	} {
		cfg, err := config.Parse([]byte(tc.text), "s.conf")
		require.NoError(t, err, tc.text)
		require.Equal(t, tc.want, cfg.SystemAccountName(), tc.text)
		require.Empty(t, cfg.Warnings, tc.text)
	}
	cfg, err := config.Parse([]byte(`pidfile: "/run/busbar.pid"`), "p.conf")
	require.NoError(t, err)
	require.Equal(t, "/run/busbar.pid", cfg.PidFile)

	cur, _ := config.Parse([]byte("system_account: A"), "a.conf")
	next, _ := config.Parse([]byte("system_account: B"), "b.conf")
	err = cur.CheckReload(next)
	require.ErrorContains(t, err, "b.conf:1:1: system_account: cannot be changed by a reload")
}

// TestLoadMissingFile: a file that cannot be read is reported with its
// name and the reason, and no made-up position.
func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.conf")
	_, err := config.Load(path)
	require.Error(t, err)
	require.Equal(t, path+": cannot read configuration: no such file or directory", err.Error())
	require.False(t, strings.Contains(err.Error(), ":1:1"))
	_, statErr := os.Stat(path)
	require.True(t, os.IsNotExist(statErr))
}
