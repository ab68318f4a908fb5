package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerStage is what the Dockerfile says about one FROM-scratch stage.
type dockerStage struct {
	files      []string // destinations of COPY --from=build, in the image
	user       string
	entrypoint []string
}

// parseDockerfile reads the stages named in targets, and the -ldflags of
// the build stage's go build (with ${VERSION} as in the Dockerfile).
func parseDockerfile(t *testing.T, file string, targets ...string) (map[string]*dockerStage, string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]*dockerStage{}
	var cur *dockerStage
	var ldflags string
	ld := regexp.MustCompile(`-ldflags "([^"]*)"`)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if m := ld.FindStringSubmatch(line); m != nil {
			ldflags = m[1]
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			cur = nil
			if len(f) == 4 && f[1] == "scratch" && strings.EqualFold(f[2], "AS") && slices.Contains(targets, f[3]) {
				cur = &dockerStage{}
				stages[f[3]] = cur
			}
		case "COPY":
			if cur != nil {
				dst := f[len(f)-1]
				if strings.HasSuffix(dst, "/") {
					dst += path.Base(f[len(f)-2])
				}
				cur.files = append(cur.files, strings.TrimPrefix(dst, "/"))
			}
		case "USER":
			if cur != nil {
				cur.user = f[1]
			}
		case "ENTRYPOINT":
			if cur != nil {
				if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, f[0]))), &cur.entrypoint); err != nil {
					t.Fatalf("Dockerfile ENTRYPOINT %q: %v", line, err)
				}
			}
		}
	}
	for _, s := range targets {
		if stages[s] == nil {
			t.Fatalf("the Dockerfile has no 'FROM scratch AS %s' stage", s)
		}
	}
	return stages, ldflags
}

// ociImage is what an archive of hack/images.sh holds.
type ociImage struct {
	ref        string
	user       string
	entrypoint []string
	files      map[string][]byte // regular files of the layer
	modes      map[string]int64
}

func readOCI(t *testing.T, file string) ociImage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		blobs[strings.TrimPrefix(h.Name, "blobs/sha256/")] = b
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("%s: index.json %q: %v", file, blobs["index.json"], err)
	}
	blob := func(digest string) []byte {
		b, ok := blobs[strings.TrimPrefix(digest, "sha256:")]
		if !ok {
			t.Fatalf("%s: blob %s missing", file, digest)
		}
		return b
	}
	var manifest struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("%s: manifest: %v (%d layers)", file, err, len(manifest.Layers))
	}
	var config struct {
		Config struct {
			User       string   `json:"User"`
			Entrypoint []string `json:"Entrypoint"`
		} `json:"config"`
	}
	if err := json.Unmarshal(blob(manifest.Config.Digest), &config); err != nil {
		t.Fatalf("%s: config: %v", file, err)
	}
	img := ociImage{
		ref: index.Manifests[0].Annotations["io.containerd.image.name"], user: config.Config.User,
		entrypoint: config.Config.Entrypoint, files: map[string][]byte{}, modes: map[string]int64{},
	}
	lr := tar.NewReader(bytes.NewReader(blob(manifest.Layers[0].Digest)))
	for {
		h, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: layer: %v", file, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, _ := io.ReadAll(lr)
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		img.files[name], img.modes[name] = b, h.Mode
	}
	return img
}

// TestImagesFollowDockerfile builds the images the e2e cluster runs
// (hack/images.sh, no container engine) and checks them against the
// Dockerfile users build from: the same files at the same places, user,
// entrypoint, and binaries built with the Dockerfile's flags. It needs
// no cluster.
func TestImagesFollowDockerfile(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("needs sha256sum and tar")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	env := append(cleanEnv(), "IMAGE_TAG=drift-check")
	if _, err := run(10*time.Minute, "", env, filepath.Join(root, "hack/images.sh"), out); err != nil {
		t.Fatal(err)
	}
	stages, ldflags := parseDockerfile(t, filepath.Join(root, "Dockerfile"), "operator", "portal")
	for name, st := range stages {
		img := readOCI(t, filepath.Join(out, name+".tar"))
		if want := "localhost/kafkasend/" + name + ":drift-check"; img.ref != want {
			t.Errorf("%s: image name %q, want %q", name, img.ref, want)
		}
		if img.user != st.user {
			t.Errorf("%s: user %q, the Dockerfile says %q", name, img.user, st.user)
		}
		if !slices.Equal(img.entrypoint, st.entrypoint) {
			t.Errorf("%s: entrypoint %q, the Dockerfile says %q", name, img.entrypoint, st.entrypoint)
		}
		var got []string
		for f := range img.files {
			got = append(got, f)
		}
		slices.Sort(got)
		want := slices.Clone(st.files)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: files %v, the Dockerfile copies %v", name, got, want)
		}
		for f, b := range img.files {
			if strings.HasPrefix(f, "etc/") {
				continue
			}
			if img.modes[f]&0o111 == 0 {
				t.Errorf("%s: /%s is not executable (mode %o)", name, f, img.modes[f])
			}
			info, err := buildinfo.Read(bytes.NewReader(b))
			if err != nil {
				t.Errorf("%s: /%s is not a Go binary: %v", name, f, err)
				continue
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			// go build does not record -ldflags with -trimpath: look for their effects.
			if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
				t.Errorf("%s: /%s built with CGO_ENABLED=%s -trimpath=%s; the Dockerfile builds with CGO_ENABLED=0 -trimpath",
					name, f, settings["CGO_ENABLED"], settings["-trimpath"])
			}
			// The entrypoint reports its version; the linker drops -X for programs without the package.
			if "/"+f == st.entrypoint[0] && strings.Contains(ldflags, "version.Version=${VERSION}") && !bytes.Contains(b, []byte("drift-check")) {
				t.Errorf("%s: /%s does not carry the version the Dockerfile links in (%s)", name, f, ldflags)
			}
			if e, err := elf.NewFile(bytes.NewReader(b)); err == nil && strings.Contains(" "+ldflags+" ", " -s ") && e.Section(".symtab") != nil {
				t.Errorf("%s: /%s has a symbol table; the Dockerfile strips it (%s)", name, f, ldflags)
			}
		}
	}
	pause := readOCI(t, filepath.Join(out, "pause.tar"))
	if pause.ref != "localhost/pause:3.10" || !slices.Equal(pause.entrypoint, []string{"/pause"}) {
		t.Errorf("pause image: %q with entrypoint %q", pause.ref, pause.entrypoint)
	}
}
