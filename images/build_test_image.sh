#!/usr/bin/env bash
# Build the tiny PCC test VM image from Debian 12 packages, fetched with apt only:
#   OUTDIR/vmlinuz     Debian's cloud kernel (boot it with console=ttyS0)
#   OUTDIR/initrd.img  gzipped newc cpio: busybox, dropbear, sftp-server, virtio modules,
#                      and images/tiny/init as /init (NoCloud seed -> net, keys, sshd)
#   OUTDIR/disk.qcow2  empty 64 MiB qcow2, the base that site overlays are staged on
#   OUTDIR/.stamp      package versions + input hashes; unchanged -> the run is a no-op
# Usage: images/build_test_image.sh OUTDIR
# Debs are cached in ${PCC_STATE_DIR:-<repo>/.state}/cache/image-debs.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
die() { echo "build_test_image: $*" >&2; exit 1; }
if [ $# -ne 1 ] || [ -z "$1" ]; then usage; fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
tiny=$here/tiny
cache=${PCC_STATE_DIR:-$repo/.state}/cache/image-debs
mkdir -p "$cache" "$1"
cache=$(cd "$cache" && pwd)
out=$(cd "$1" && pwd)

# The cloud kernel has no modules.dep, so /init insmods these lists in this order
# (checked against each module's "depends" below). Groups: core at boot; cdrom only when
# no seed is on a virtio disk (IDE or virtio-scsi cdrom); acpi after sshd is up.
MODULE_GROUPS="core cdrom acpi"
declare -A MODULES=(
    [core]="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
            failover net_failover virtio_net virtio_blk virtio-rng cdrom isofs"
    [cdrom]="scsi_common scsi_mod virtio_scsi libata ata_piix sr_mod"
    [acpi]="button evdev"
)
KERNEL_META=linux-image-cloud-amd64
# dropbear's libraries (what ldd names) plus libgmp10, which libtomcrypt1 links to.
PACKAGES="busybox-static dropbear-bin openssh-sftp-server
  libc6 libcrypt1 zlib1g libtomcrypt1 libtommath1 libgmp10"
BINARIES="usr/sbin/dropbear usr/bin/dropbearkey usr/lib/openssh/sftp-server"
DISK_SIZE=64M

is_root() { [ "$(id -u)" = 0 ]; }

# --- host tools ------------------------------------------------------------------
missing=()
command -v cpio >/dev/null || missing+=(cpio)
command -v qemu-img >/dev/null || missing+=(qemu-utils)
for tool in apt-get apt-cache dpkg-deb gzip flock sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (this needs a Debian 12 host)"
done
if [ ${#missing[@]} -gt 0 ]; then
    if is_root; then
        echo "build_test_image: installing ${missing[*]}" >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    else
        die "missing host packages: ${missing[*]} (as root: apt-get install ${missing[*]})"
    fi
fi

# --- resolve versions (one apt-cache call; its own pkgcache keeps it ~0.2 s) -------
apt_show() {
    # shellcheck disable=SC2086
    apt-cache -o Dir::Cache::pkgcache="$cache/.apt-pkgcache.bin" \
        show --no-all-versions "$KERNEL_META" $PACKAGES 2>/dev/null
}
if ! info=$(apt_show); then
    is_root || die "apt-cache does not know $KERNEL_META $PACKAGES; run apt-get update as root"
    apt-get update -qq >/dev/null
    info=$(apt_show) || die "apt-cache show failed for $KERNEL_META $PACKAGES"
fi
# "pkg=version" lines; the kernel meta package names the real kernel package exactly.
pins=$(awk -v meta="$KERNEL_META" '
    /^Package: /  { p = $2 }
    /^Version: /  { if (p != meta) print p "=" $2 }
    /^Depends: /  && p == meta {
        if (match($0, /linux-image-[0-9][^ ,]*-cloud-amd64 \(= [^)]*\)/)) {
            s = substr($0, RSTART, RLENGTH); gsub(/[()=]/, "", s); split(s, a, " +")
            print a[1] "=" a[2]
        }
    }' <<<"$info")
kernel_pkg=$(grep -m1 '^linux-image-' <<<"$pins" | cut -d= -f1) || true
[ -n "$kernel_pkg" ] || die "cannot resolve the kernel package from $KERNEL_META"
[ "$(wc -l <<<"$pins")" -eq $(($(wc -w <<<"$PACKAGES") + 1)) ] \
    || die "could not resolve all packages: $(tr '\n' ' ' <<<"$pins")"

stamp="# images/build_test_image.sh: rebuilt when any line changes
$pins
inputs=$(cat "${BASH_SOURCE[0]}" "$tiny/init" "$tiny/udhcpc.script" | sha256sum | cut -d' ' -f1)"

up_to_date() {
    [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/disk.qcow2" ] \
        && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]
}
if up_to_date; then
    echo "build_test_image: $out is up to date ($kernel_pkg)"
    exit 0
fi

# Serialise builds sharing a cache (parallel test sessions), then look again.
exec 9>"$cache/.lock"
flock 9
if up_to_date; then
    echo "build_test_image: $out is up to date ($kernel_pkg)"
    exit 0
fi

# --- download ----------------------------------------------------------------------
deb_of() { # pkg=version -> cached file name, if present (apt writes ':' as %3a)
    local pkg=${1%%=*} ver=${1#*=}
    compgen -G "$cache/${pkg}_${ver//:/%3a}_*.deb" | head -n1 || true
}
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
need=()
while read -r pin; do
    [ -n "$(deb_of "$pin")" ] || need+=("$pin")
done <<<"$pins"
if [ ${#need[@]} -gt 0 ]; then
    echo "build_test_image: downloading ${need[*]}" >&2
    mkdir "$work/dl"
    # apt drops to user _apt, which cannot write a root-owned cache: stay root then.
    sandbox=()
    is_root && sandbox=(-o APT::Sandbox::User=root)
    (cd "$work/dl" && apt-get download -q=2 "${sandbox[@]}" "${need[@]}") \
        || die "apt-get download failed"
    for pin in "${need[@]}"; do # drop superseded versions, keep the cache small
        rm -f "$cache/${pin%%=*}_"*.deb
    done
    mv "$work/dl"/*.deb "$cache/" # only after a complete download
fi

# --- unpack ------------------------------------------------------------------------
x=$work/x       # everything the debs hold
root=$work/root # what goes into the initramfs
while read -r pin; do
    dpkg -x "$(deb_of "$pin")" "$x"
done <<<"$pins"
kver=${kernel_pkg#linux-image-}
kmods=$x/lib/modules/$kver
[ -f "$x/boot/vmlinuz-$kver" ] || die "no vmlinuz-$kver in $kernel_pkg"

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib64,etc/pcc,etc/udhcpc,proc,sys,dev,run,tmp,root,mnt,var/log}
install -m 0755 "$tiny/init" "$root/init"
install -m 0755 "$tiny/udhcpc.script" "$root/etc/udhcpc/default.script"

# /init runs `busybox --install -s` for the other applets (faster than ~400 ln here).
install -m 0755 "$x/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# dropbear, dropbearkey, sftp-server and exactly the libraries the loader resolves for
# them, from the unpacked debs (a library found anywhere else means PACKAGES is short).
libdirs=$x/lib/x86_64-linux-gnu:$x/usr/lib/x86_64-linux-gnu
loader=lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
install -D -m 0755 "$x/$loader" "$root/$loader"
ln -s "/$loader" "$root/lib64/ld-linux-x86-64.so.2"
for bin in $BINARIES; do
    install -D -m 0755 "$x/$bin" "$root/$bin"
    "$x/$loader" --library-path "$libdirs" --list "$x/$bin" >"$work/ldd" \
        || die "cannot resolve libraries of $bin"
    while read -r name arrow path _; do
        [ "$arrow" = "=>" ] || continue
        case "$path" in
        "$x"/*) [ -e "$root/${path#"$x"/}" ] || install -D -m 0644 "$path" "$root/${path#"$x"/}" ;;
        *) die "$bin needs $name, which none of the packages provides ($path)" ;;
        esac
    done <"$work/ldd"
done
# dropbear runs its compiled-in SFTPSERVER_PATH for the "sftp" subsystem (OpenSSH 9 scp).
sftp=$(grep -ao '/usr/[a-z/]*sftp-server' "$root/usr/sbin/dropbear" | head -n1) || true
[ -n "$sftp" ] || die "cannot find dropbear's sftp-server path"
[ -e "$root$sftp" ] || { mkdir -p "$root${sftp%/*}" && ln -s /usr/lib/openssh/sftp-server "$root$sftp"; }

# Kernel modules: flat in /lib/modules/<kver>; built-in ones are skipped, and every
# dependency must be built in or come earlier in the lists.
mkdir -p "$root/lib/modules/$kver"
declare -A have=()
report=""
for group in $MODULE_GROUPS; do
    : >"$root/etc/pcc/modules.$group"
    for mod in ${MODULES[$group]}; do
        name=${mod//-/_}
        ko=$(find "$kmods/kernel" -name "$mod.ko" -print -quit)
        if [ -z "$ko" ]; then
            grep -Eq "/($mod|$name)\.ko$" "$kmods/modules.builtin" \
                || die "module $mod is neither built in nor shipped in $kernel_pkg"
            report+=" $mod(built-in)"
            have[$name]=1
            continue
        fi
        deps=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p')
        for dep in ${deps//,/ }; do
            [ -n "${have[${dep//-/_}]:-}" ] || grep -Eq "/${dep}\.ko$" "$kmods/modules.builtin" \
                || die "module $mod needs $dep first"
        done
        install -m 0644 "$ko" "$root/lib/modules/$kver/$mod.ko"
        echo "$mod" >>"$root/etc/pcc/modules.$group"
        have[$name]=1
        report+=" $mod"
    done
done

# --- assemble ----------------------------------------------------------------------
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    | gzip >"$work/initrd.img"
install -m 0644 "$x/boot/vmlinuz-$kver" "$work/vmlinuz"
rm -f "$out/.stamp"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img"
# The base disk carries no data: keep an existing one (overlays may point at it).
if [ ! -s "$out/disk.qcow2" ]; then
    qemu-img create -q -f qcow2 "$out/disk.qcow2.tmp" "$DISK_SIZE"
    mv -f "$out/disk.qcow2.tmp" "$out/disk.qcow2"
fi
printf '%s\n' "$stamp" >"$out/.stamp"
echo "build_test_image: built $out ($kernel_pkg, initrd $(du -k "$out/initrd.img" | cut -f1) KiB; modules:$report)"
