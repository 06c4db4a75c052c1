package hub_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/internal/natsserver"
)

// readmeConfigs returns the configuration files README's "Many instances"
// section shows, by name: its first code block, one file after each
// "# <name>.conf" line.
func readmeConfigs(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## Many instances: one MQTT broker\n")
	if !ok {
		t.Fatal(`README has no "## Many instances: one MQTT broker" section`)
	}
	_, block, ok := strings.Cut(sec, "\n```\n")
	if !ok {
		t.Fatal("the section has no code block")
	}
	block, _, _ = strings.Cut(block, "\n```")
	files := map[string]string{}
	name := ""
	for line := range strings.SplitSeq(block, "\n") {
		if f, ok := strings.CutPrefix(line, "# "); ok && strings.HasSuffix(f, ".conf") {
			name = f
			continue
		}
		if name == "" {
			t.Fatalf("a line before the first file name: %q", line)
		}
		files[name] += line + "\n"
	}
	return files
}

// TestReadmeManyInstancesConfig: README gives the complete configuration
// of a three-node hub and two busbar instances. Each busbar file parses
// and keeps MQTT state in the hub's domain through a leaf remote listing
// the three hub nodes; each hub file passes nats-server 2.15.2's
// configuration check (-t) and has JetStream in that domain.
func TestReadmeManyInstancesConfig(t *testing.T) {
	files := readmeConfigs(t)
	for _, want := range []string{"hub1.conf", "hub2.conf", "hub3.conf", "busbar-a.conf", "busbar-b.conf"} {
		if files[want] == "" {
			t.Errorf("README shows no %s (it shows %d files)", want, len(files))
		}
	}
	bin := natsserver.Binary(t, "2.15.2")
	dir := t.TempDir()
	for name, text := range files {
		if strings.HasPrefix(name, "busbar-") {
			cfg, err := config.Parse([]byte(text), name)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			st, err := cfg.HubStore(nil)
			if err != nil || st == nil || cfg.MQTT.JSDomain != "hub" {
				t.Errorf("%s: MQTT state not in the hub's domain: %v", name, err)
			}
			if n := len(cfg.Leafnodes.Remotes[0].URLs); n != 3 {
				t.Errorf("%s: its leaf remote lists %d hub nodes", name, n)
			}
			if want := strings.TrimSuffix(name, ".conf"); cfg.Broker.ServerName != want {
				t.Errorf("%s: server_name %q", name, cfg.Broker.ServerName)
			}
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-t", "-c", path).CombinedOutput(); err != nil {
			t.Errorf("%s: nats-server -t: %v\n%s", name, err, out)
		}
		if !strings.Contains(text, "domain: hub") || !strings.Contains(text, "server_name: "+strings.TrimSuffix(name, ".conf")) {
			t.Errorf("%s: no JetStream domain hub or server_name of its own", name)
		}
	}
}
