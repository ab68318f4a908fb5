package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// makeOutput runs make in the repository root and returns its output.
func makeOutput(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-s"}, args...)...)
	cmd.Dir = root
	// The Makefile's variables come from git, not from the shell.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "VERSION" && name != "REVISION" && name != "LDFLAGS" && name != "BIN" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestBinariesPrintTheBuildVersion builds the binaries as `make build` does
// and checks that manager, portal and kafkasend print the same version and
// revision, taken from git and the chart's appVersion (hack/version.sh).
func TestBinariesPrintTheBuildVersion(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	version := makeOutput(t, root, "version")
	g.Expect(version).To(HavePrefix(appVersion(t)), "the build version does not start with the chart's appVersion")
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	g.Expect(err).NotTo(HaveOccurred())
	revision := strings.TrimSpace(string(rev))

	bin := t.TempDir()
	makeOutput(t, root, "build", "BIN="+bin)
	var lines []string
	for _, cmd := range [][]string{{"manager", "--version"}, {"portal", "--version"}, {"kafkasend", "--version"}, {"kafkasend", "version"}} {
		out, err := exec.Command(filepath.Join(bin, cmd[0]), cmd[1:]...).CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "%v: %s", cmd, out)
		line := strings.TrimSpace(string(out))
		g.Expect(line).To(HavePrefix(cmd[0]+" "+version+" (revision "+revision+", go"), "%v", cmd)
		lines = append(lines, strings.TrimPrefix(line, cmd[0]+" "))
	}
	g.Expect(lines).To(HaveEach(lines[0]))
}
