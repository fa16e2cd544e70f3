/*
 * katad-test-init: a tiny static PID 1 used only to validate katad's guest kernel
 * (scripts/boot-test.sh). It is not the guest agent.
 *
 * It prints a marker to the console, mounts the pseudo file systems, loads the
 * modules listed in /etc/katad-modules (Debian-kernel fallback initrd), reports
 * what the kernel sees (virtio-serial ports, PCI devices, CPUs, kernel release,
 * the 9p share), optionally waits for a PCIe hot-plugged device
 * (kernel command line "katad.test=hotplug"), then reboots the machine so that
 * QEMU started with -no-reboot exits.
 *
 * Every line it prints starts with "katad-test-init: " so the host can grep it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define TAG "katad-test-init: "

static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* The console is fd 1 when the initramfs has /dev/console. */
	(void)!write(1, TAG, sizeof(TAG) - 1);
	(void)!write(1, buf, n);
}

/* Reads a small sysfs/proc file into buf without the trailing newline. */
static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

static void do_mount(const char *src, const char *dst, const char *type,
		     const char *opts)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, 0, opts) != 0 && errno != EBUSY)
		say("mount %s on %s failed: %s", type, dst, strerror(errno));
}

static void load_modules(void)
{
	FILE *f = fopen("/etc/katad-modules", "re");
	char line[512];
	int loaded = 0, failed = 0;

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		int fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			say("module %s: open: %s", line, strerror(errno));
			failed++;
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
			say("module %s: finit_module: %s", line, strerror(errno));
			failed++;
		} else {
			loaded++;
		}
		close(fd);
	}
	fclose(f);
	say("modules: loaded %d, failed %d", loaded, failed);
}

static void list_virtio_ports(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	char path[512], name[256];
	int n = 0;

	if (!d) {
		say("virtio-ports: none (%s)", strerror(errno));
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
		read_small(path, name, sizeof(name));
		say("virtio-port: %s name=%s", e->d_name, name);
		n++;
	}
	closedir(d);
	if (n == 0)
		say("virtio-ports: none");
}

/* Prints every PCI device; returns how many there are. */
static int list_pci(int quiet)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	char path[512], vendor[32], device[32], class[32], driver[512];
	int n = 0;

	if (!d) {
		if (!quiet)
			say("pci: no /sys/bus/pci/devices (%s)", strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		if (quiet)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		read_small(path, vendor, sizeof(vendor));
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
		read_small(path, device, sizeof(device));
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class", e->d_name);
		read_small(path, class, sizeof(class));
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", e->d_name);
		ssize_t l = readlink(path, driver, sizeof(driver) - 1);
		driver[l > 0 ? l : 0] = '\0';
		const char *drv = strrchr(driver, '/');
		say("pci: %s %s:%s class=%s driver=%s", e->d_name, vendor + 2,
		    device + 2, class, drv ? drv + 1 : "-");
	}
	closedir(d);
	return n;
}

static void check_share(void)
{
	char buf[256];

	mkdir("/mnt", 0755);
	if (mount("katad-share", "/mnt", "9p", 0,
		  "trans=virtio,version=9p2000.L,msize=262144") != 0) {
		say("9p: mount failed: %s", strerror(errno));
		return;
	}
	if (read_small("/mnt/hello", buf, sizeof(buf)) != 0)
		say("9p: mounted, /mnt/hello unreadable: %s", strerror(errno));
	else
		say("9p: ok hello=%s", buf);
	int fd = open("/mnt/from-guest", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		(void)!write(fd, "written by guest\n", 17);
		close(fd);
	}
	umount("/mnt");
}

static int cmdline_has(const char *word)
{
	char buf[1024];

	if (read_small("/proc/cmdline", buf, sizeof(buf)) != 0)
		return 0;
	for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " "))
		if (strcmp(tok, word) == 0)
			return 1;
	return 0;
}

/* Waits up to 30 s for a new PCI device with a bound driver (hot-added by the host). */
static void wait_hotplug(int before)
{
	char up[64];

	read_small("/proc/uptime", up, sizeof(up));
	say("hotplug: waiting (devices now %d, uptime %s)", before, up);
	for (int i = 0; i < 300; i++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		if (list_pci(1) > before) {
			/* give the driver a moment to bind */
			nanosleep(&ts, NULL);
			list_pci(0);
			struct stat st;
			read_small("/proc/uptime", up, sizeof(up));
			say("hotplug: after %d ms, uptime %s", (i + 2) * 100, up);
			say("hotplug: new device seen; /sys/block/vda %s",
			    stat("/sys/block/vda", &st) == 0 ? "present" : "absent");
			return;
		}
	}
	say("hotplug: timeout, no new device");
}

int main(void)
{
	struct utsname u;
	char buf[256];

	/* The kernel gives PID 1 /dev/console as fds 0-2 when the initramfs has the node. */
	if (fcntl(1, F_GETFD) < 0) {
		int fd = open("/dev/console", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
	}
	say("reached /init");

	do_mount("proc", "/proc", "proc", NULL);
	do_mount("sysfs", "/sys", "sysfs", NULL);
	do_mount("devtmpfs", "/dev", "devtmpfs", NULL);

	load_modules();
	if (uname(&u) == 0)
		say("uname: %s %s %s", u.sysname, u.release, u.machine);
	read_small("/sys/devices/system/cpu/online", buf, sizeof(buf));
	say("cpus online: %s", buf);
	read_small("/proc/uptime", buf, sizeof(buf));
	say("uptime: %s", buf);
	say("time: %lld", (long long)time(NULL));
	list_virtio_ports();
	int npci = list_pci(0);
	check_share();
	if (cmdline_has("katad.test=hotplug"))
		wait_hotplug(npci);
	say("done, rebooting");
	sync();
	reboot(RB_AUTOBOOT);
	say("reboot failed: %s", strerror(errno));
	for (;;)
		pause();
}
