package wire

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func readProtocolDoc(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "protocol.md"))
	if err != nil {
		t.Fatalf("reading docs/protocol.md: %v", err)
	}
	return string(doc)
}

// fencedAfter returns the first fenced code block after marker.
func fencedAfter(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("docs/protocol.md has no %q", marker)
	}
	rest := doc[i:]
	start := strings.Index(rest, "```")
	start += strings.Index(rest[start:], "\n") + 1
	end := strings.Index(rest[start:], "```")
	return rest[start : start+end]
}

// TestDocumentedHexDump checks the worked example's xxd dump in
// docs/protocol.md against what EncodeRequest produces.
func TestDocumentedHexDump(t *testing.T) {
	dump := fencedAfter(t, readProtocolDoc(t), "<!-- golden-value")
	var hexDigits strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(dump), "\n") {
		// "00000000: 4b53 0101 ...  KS......": the hex sits between the
		// offset and the two spaces before the ASCII column.
		_, rest, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("not an xxd line: %q", line)
		}
		hexPart, _, _ := strings.Cut(rest, "  ")
		hexDigits.WriteString(strings.ReplaceAll(hexPart, " ", ""))
	}
	documented, err := hex.DecodeString(hexDigits.String())
	if err != nil {
		t.Fatalf("documented dump: %v", err)
	}
	want, _ := EncodeRequest(goldenRequest())
	if !bytes.Equal(documented, want) {
		t.Fatalf("documented bytes differ from EncodeRequest:\ndoc  %x\ncode %x", documented, want)
	}
	if hexDigits.String() != goldenValueHex {
		t.Fatal("the test's golden hex and the document disagree")
	}
}

// TestDocumentedPythonScript runs the Python requester of docs/protocol.md
// and checks that it writes the documented payload and prints the right
// kcat flags, checksum included.
func TestDocumentedPythonScript(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	doc := readProtocolDoc(t)
	script := fencedAfter(t, doc, "## 8. Producing a job with kcat")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "make_job.py"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "make_job.py")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 make_job.py: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "job.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := EncodeRequest(goldenRequest())
	if !bytes.Equal(got, want) {
		t.Fatalf("the documented script writes\n%x\nwant\n%x", got, want)
	}
	flags := "-H ks-version=1 -H ks-type=request -H ks-chunk=0 -H ks-chunks=1 -H ks-size=230 -H ks-crc32c=86444bf6"
	if strings.TrimSpace(string(out)) != flags {
		t.Fatalf("script printed %q, want %q", out, flags)
	}
	if !strings.Contains(strings.Join(strings.Fields(doc), " "), "-H ks-size=230 -H ks-crc32c=86444bf6 job.bin") {
		t.Error("the documented kcat command does not carry the script's flags")
	}
}
