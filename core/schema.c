/* Type checking of request bodies against the virtcontainers structures (see schema.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "schema.h"
#include "util.h"

#define STR(n) { .name = n, .type = SCHEMA_STRING }
#define BOOL(n) { .name = n, .type = SCHEMA_BOOL }
#define INT(n) { .name = n, .type = SCHEMA_INT }
#define UINT(n) { .name = n, .type = SCHEMA_UINT }
#define ANY(n) { .name = n, .type = SCHEMA_ANY }
#define MAP(n) { .name = n, .type = SCHEMA_MAP }
#define OBJ(n, f) { .name = n, .type = SCHEMA_OBJECT, .fields = f }
#define STRS(n) { .name = n, .type = SCHEMA_ARRAY, .item = SCHEMA_STRING }
#define OBJS(n, f) { .name = n, .type = SCHEMA_ARRAY, .item = SCHEMA_OBJECT, .fields = f }
#define END { .name = NULL }

static const schema_field_t param[] = { STR("Key"), STR("Value"), END };

static const schema_field_t hypervisor_config[] = {
        STR("KernelPath"), STR("ImagePath"), STR("InitrdPath"), STR("FirmwarePath"), STR("MachineAccelerators"),
        STR("CPUFeatures"), STR("HypervisorPath"), STR("HypervisorCtlPath"), STR("JailerPath"),
        STR("BlockDeviceDriver"), STR("HypervisorMachineType"), STR("MemoryPath"), STR("DevicesStatePath"),
        STR("EntropySource"), STR("SharedFS"), STR("VirtioFSDaemon"), STR("VirtioFSCache"),
        OBJS("KernelParams", param), OBJS("HypervisorParams", param), UINT("NumVCPUs"), UINT("DefaultMaxVCPUs"),
        UINT("DefaultVCPUs"), UINT("MemorySize"), UINT("DefaultMemSz"), UINT("DefaultMaxMemorySize"),
        UINT("DefaultBridges"), UINT("Msize9p"), UINT("MemSlots"), BOOL("DisableBlockDeviceUse"), BOOL("Debug"),
        BOOL("MemPrealloc"), BOOL("HugePages"), BOOL("Realtime"), BOOL("Mlock"), BOOL("DisableNestingChecks"),
        BOOL("BootToBeTemplate"), BOOL("BootFromTemplate"), BOOL("EnableIOThreads"), BOOL("HotplugVFIOOnRootBus"),
        BOOL("DisableVhostNet"), BOOL("GuestMemoryDumpPaging"), END,
};

static const schema_field_t vm_resources[] = { UINT("Memory"), UINT("VCPUs"), END };

static const schema_field_t network_config[] = {
        STR("NetNSPath"), BOOL("NetNsCreated"), BOOL("DisableNewNetNs"), INT("NumInterfaces"),
        INT("InterworkingModel"), END,
};

static const schema_field_t volume[] = { STR("MountTag"), STR("HostPath"), END };

static const schema_field_t env_var[] = { STR("Var"), STR("Value"), END };

static const schema_field_t capabilities[] = {
        STRS("bounding"), STRS("effective"), STRS("inheritable"), STRS("permitted"), STRS("ambient"), END,
};

const schema_field_t schema_cmd[] = {
        STRS("Args"), OBJS("Envs", env_var), STRS("SupplementaryGroups"), STR("WorkDir"), STR("User"),
        STR("PrimaryGroup"), STR("Console"), OBJ("Capabilities", capabilities), BOOL("Interactive"),
        BOOL("Detach"), BOOL("NoNewPrivileges"), END,
};

static const schema_field_t mount[] = {
        STR("Source"), STR("Destination"), STR("Type"), STR("HostPath"), STR("BlockDeviceID"), STRS("Options"),
        BOOL("ReadOnly"), END,
};

static const schema_field_t device_info[] = {
        STR("HostPath"), STR("ContainerPath"), STR("DevType"), STR("ID"), INT("Major"), INT("Minor"),
        UINT("FileMode"), UINT("UID"), UINT("GID"), BOOL("Hotplugged"), BOOL("Pmem"), BOOL("ColdPlug"), END,
};

static const schema_field_t device_cgroup[] = {
        BOOL("allow"), STR("type"), INT("major"), INT("minor"), STR("access"), END,
};
static const schema_field_t memory_resources[] = {
        INT("limit"), INT("reservation"), INT("swap"), INT("kernel"), INT("kernelTCP"), UINT("swappiness"),
        BOOL("disableOOMKiller"), BOOL("useHierarchy"), BOOL("checkBeforeUpdate"), END,
};
static const schema_field_t cpu_resources[] = {
        UINT("shares"), INT("quota"), UINT("period"), INT("realtimeRuntime"), UINT("realtimePeriod"), STR("cpus"),
        STR("mems"), INT("idle"), END,
};
static const schema_field_t pids_resources[] = { INT("limit"), END };

const schema_field_t schema_linux_resources[] = {
        OBJS("devices", device_cgroup), OBJ("memory", memory_resources), OBJ("cpu", cpu_resources),
        OBJ("pids", pids_resources), ANY("blockIO"), ANY("hugepageLimits"), ANY("network"), ANY("rdma"),
        MAP("unified"), END,
};

const schema_field_t schema_container_config[] = {
        STR("ID"), { .name = "RootFs", .type = SCHEMA_ROOTFS }, BOOL("ReadonlyRootfs"), OBJ("Cmd", schema_cmd),
        MAP("Annotations"), OBJS("Mounts", mount), OBJS("DeviceInfos", device_info),
        OBJ("Resources", schema_linux_resources), ANY("CustomSpec"), END,
};

const schema_field_t schema_sandbox_config[] = {
        STR("ID"), STR("Hostname"), OBJ("VMConfig", vm_resources), STR("HypervisorType"),
        OBJ("HypervisorConfig", hypervisor_config), STR("AgentType"), ANY("AgentConfig"), STR("ProxyType"),
        ANY("ProxyConfig"), STR("ShimType"), ANY("ShimConfig"), STR("NetworkModel"),
        OBJ("NetworkConfig", network_config), OBJS("Volumes", volume), OBJS("Containers", schema_container_config),
        MAP("Annotations"), BOOL("SandboxCgroupOnly"), BOOL("SystemdCgroup"), BOOL("Stateful"),
        BOOL("DisableGuestSeccomp"), ANY("Experimental"), ANY("Hooks"), END,
};

const schema_field_t schema_signal_request[] = {
        { .name = "Signal", .type = SCHEMA_SIGNAL, .required = 1 }, BOOL("All"), END,
};

const schema_field_t schema_winsize_request[] = {
        { .name = "Height", .type = SCHEMA_UINT, .required = 1 },
        { .name = "Width", .type = SCHEMA_UINT, .required = 1 },
        END,
};

static const schema_field_t rootfs[] = {
        STR("Target"), STR("Source"), STR("Type"), STRS("Options"), BOOL("Mounted"), END,
};

static const char *type_name(schema_type_t t, schema_type_t item) {
        switch (t) {
        case SCHEMA_STRING:
                return "a string";
        case SCHEMA_BOOL:
                return "a boolean";
        case SCHEMA_INT:
                return "an integer";
        case SCHEMA_UINT:
                return "a non-negative integer";
        case SCHEMA_OBJECT:
                return "an object";
        case SCHEMA_ARRAY:
                return item == SCHEMA_STRING ? "an array of strings" : "an array of objects";
        case SCHEMA_MAP:
                return "an object of strings";
        case SCHEMA_NULLABLE_MAP:
                return "an object of strings or nulls";
        case SCHEMA_SIGNAL:
                return "a signal number or name";
        case SCHEMA_ROOTFS:
                return "a path string or a RootFs object";
        default:
                return "any value";
        }
}

static int check_fields(const json_t *value, const schema_field_t *fields, const char *path, kd_error_t *e);

/* Checks one value against a type; null passes for the types Go decodes null into. */
static int check_value(const json_t *v, schema_type_t type, schema_type_t item, const schema_field_t *fields,
                       const char *path, kd_error_t *e) {
        char sub[512];
        if (json_is_null(v) && type != SCHEMA_SIGNAL)
                return 0;
        switch (type) {
        case SCHEMA_ANY:
                return 0;
        case SCHEMA_STRING:
                if (json_is_string(v))
                        return 0;
                break;
        case SCHEMA_BOOL:
                if (json_is_boolean(v))
                        return 0;
                break;
        case SCHEMA_INT:
                if (json_is_integer(v))
                        return 0;
                break;
        case SCHEMA_UINT:
                if (json_is_integer(v) && json_integer_value(v) >= 0)
                        return 0;
                break;
        case SCHEMA_OBJECT:
                if (json_is_object(v))
                        return check_fields(v, fields, path, e);
                break;
        case SCHEMA_MAP:
        case SCHEMA_NULLABLE_MAP: {
                if (!json_is_object(v))
                        break;
                const char *k;
                json_t *x;
                json_object_foreach((json_t *) v, k, x) if (!json_is_string(x) &&
                                                            !(type == SCHEMA_NULLABLE_MAP && json_is_null(x))) {
                        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
                        return kd_error_set(e, -EINVAL, "invalid_field", "%s: expected a string", sub);
                }
                return 0;
        }
        case SCHEMA_ARRAY: {
                if (!json_is_array(v))
                        break;
                size_t i;
                json_t *x;
                json_array_foreach(v, i, x) {
                        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
                        if (item == SCHEMA_STRING && !json_is_string(x))
                                return kd_error_set(e, -EINVAL, "invalid_field", "%s: expected a string", sub);
                        int r = check_value(x, item, SCHEMA_ANY, fields, sub, e);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        case SCHEMA_SIGNAL:
                if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 64)
                        return 0;
                if (json_is_string(v) && signal_from_string(json_string_value(v)) > 0)
                        return 0;
                break;
        case SCHEMA_ROOTFS:
                if (json_is_string(v))
                        return 0;
                if (json_is_object(v))
                        return check_fields(v, rootfs, path, e);
                break;
        }
        return kd_error_set(e, -EINVAL, "invalid_field", "%s: expected %s", *path ? path : "body", type_name(type, item));
}

static int check_fields(const json_t *value, const schema_field_t *fields, const char *path, kd_error_t *e) {
        char sub[512];
        for (const schema_field_t *f = fields; f && f->name; f++) {
                json_t *v = json_object_get(value, f->name);
                snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", f->name);
                if (f->required && (!v || json_is_null(v)))
                        return kd_error_set(e, -EINVAL, "invalid_field", "%s: required", sub);
                if (!v)
                        continue;
                int r = check_value(v, f->type, f->item, f->fields, sub, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

int schema_check(const json_t *value, const schema_field_t *fields, const char *what, kd_error_t *e) {
        if (!json_is_object(value))
                return kd_error_set(e, -EINVAL, "invalid_field", "%s: expected a JSON object", what);
        return check_fields(value, fields, "", e);
}

int schema_check_annotations_patch(const json_t *value, kd_error_t *e) {
        if (!json_is_object(value))
                return kd_error_set(e, -EINVAL, "invalid_field", "annotations: expected a JSON object");
        return check_value(value, SCHEMA_NULLABLE_MAP, SCHEMA_ANY, NULL, "", e);
}

int schema_decode_body(const char *body, size_t len, json_t **ret, kd_error_t *e) {
        json_error_t err;
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
        if (!j)
                return kd_error_set(e, -EINVAL, "invalid_json", "malformed JSON at line %d column %d: %s", err.line,
                                    err.column, err.text);
        *ret = j;
        return 0;
}
