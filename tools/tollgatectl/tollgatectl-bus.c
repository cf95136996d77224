/* SPDX-License-Identifier: MIT */
#include <stdarg.h>

#include "tollgatectl.h"

#define DBUS_NAME "org.freedesktop.DBus"
#define DBUS_PATH "/org/freedesktop/DBus"
#define DBUS_INTERFACE "org.freedesktop.DBus"
#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

TG_DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose)

int ctl_connect(Context *c) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (c->address) {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return ctl_error_errno(r, "Cannot allocate a bus connection: %m");
                r = sd_bus_set_address(bus, c->address);
                if (r < 0)
                        return ctl_error_errno(r, "Invalid bus address \"%s\": %m", c->address);
                r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else
                r = sd_bus_open_system(&bus); /* honours $DBUS_SYSTEM_BUS_ADDRESS */
        if (r < 0)
                return ctl_error_errno(r, "Cannot connect to %s: %m", c->address ? c->address : "the system bus");
        c->bus = TAKE_PTR(bus);
        return 0;
}

bool bus_error_is_not_running(const sd_bus_error *error) {
        return sd_bus_error_has_name(error, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
               sd_bus_error_has_name(error, SD_BUS_ERROR_NAME_HAS_NO_OWNER);
}

int ctl_bus_failure(const sd_bus_error *error, int r, const char *what) {
        if (sd_bus_error_is_set(error))
                ctl_error("%s: %s", error->name,
                          error->message ? error->message : strerror(sd_bus_error_get_errno(error)));
        else
                ctl_error_errno(r, "%s: %m", what);
        return bus_error_is_not_running(error) ? CTL_EXIT_NOT_RUNNING : CTL_EXIT_FAILURE;
}

int ctl_reply_failure(int r, const char *member) {
        ctl_error_errno(r, "Cannot read the reply of %s(): %m", member);
        return CTL_EXIT_FAILURE;
}

static int call_dbus(Context *c, const char *member, sd_bus_error *error, sd_bus_message **reply,
                     const char *types, const char *arg) {
        return sd_bus_call_method(c->bus, DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, member, error, reply, types, arg);
}

int service_state(Context *c, const Service *s, ServiceState *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        ServiceState st = {};
        int b, r;

        r = call_dbus(c, "NameHasOwner", &error, &reply, "s", s->bus_name);
        if (r < 0) {
                ctl_bus_failure(&error, r, "NameHasOwner");
                return r;
        }
        r = sd_bus_message_read(reply, "b", &b);
        if (r < 0)
                return ctl_error_errno(r, "Cannot read the reply of NameHasOwner(): %m");
        st.running = b;
        reply = sd_bus_message_unref(reply);

        /* Not running is not the same as not installed: an activatable name
         * would be started by systemd on the first method call. */
        r = call_dbus(c, "ListActivatableNames", &error, &reply, NULL, NULL);
        if (r >= 0) {
                _cleanup_free_ char **names = NULL;
                if (sd_bus_message_read_strv(reply, &names) >= 0)
                        for (char **n = names; n && *n; n++) {
                                if (streq(*n, s->bus_name))
                                        st.activatable = true;
                                free(*n);
                        }
        }
        sd_bus_error_free(&error);

        if (st.running && sd_bus_get_name_creds(c->bus, s->bus_name, SD_BUS_CREDS_PID, &creds) >= 0) {
                pid_t pid;
                if (sd_bus_creds_get_pid(creds, &pid) >= 0)
                        st.pid = (uint32_t) pid;
        }
        *ret = st;
        return 0;
}

int service_call_message(Context *c, sd_bus_message *m, sd_bus_error *error, sd_bus_message **reply) {
        return sd_bus_call(c->bus, m, 0, error, reply);
}

int service_call(Context *c, const Service *s, const char *member, sd_bus_error *error, sd_bus_message **reply,
                 const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, s->bus_name, s->path, s->interface, member);
        if (r < 0)
                return r;
        if (types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
                if (r < 0)
                        return r;
        }
        return sd_bus_call(c->bus, m, 0, error, reply);
}

int service_reload(Context *c, const Service *s) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = service_call(c, s, "Reload", &error, NULL, NULL);
        if (r < 0)
                return ctl_bus_failure(&error, r, "Reload()");
        return CTL_EXIT_SUCCESS;
}

int service_get_all(Context *c, const Service *s, PropertyList *ret, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, s->bus_name, s->path, PROPERTIES_INTERFACE, "GetAll");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", s->interface);
        /* Looking must not start anything: no D-Bus activation. */
        if (r >= 0)
                r = sd_bus_message_set_auto_start(m, false);
        if (r < 0)
                return r;
        r = sd_bus_call(c->bus, m, 0, error, &reply);
        if (r < 0)
                return r;
        return property_list_read(reply, s, ret);
}

/* --- Properties ---------------------------------------------------------------- */

void property_list_done(PropertyList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].name);
                free(l->items[i].s);
                free(l->items[i].json);
                free(l->items[i].text);
        }
        free(l->items);
        *l = (PropertyList) {};
}

const Property *property_find(const PropertyList *l, const char *name) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].name, name))
                        return &l->items[i];
        return NULL;
}

uint64_t property_u64(const PropertyList *l, const char *name) {
        const Property *p = property_find(l, name);
        return p ? p->u : 0;
}

const char *property_str(const PropertyList *l, const char *name) {
        const Property *p = property_find(l, name);
        return p && p->s ? p->s : "";
}

static bool is_byte_property(const Service *s, const char *name) {
        for (const char *const *p = s ? s->byte_properties : NULL; p && *p; p++)
                if (streq(*p, name))
                        return true;
        return false;
}

/* Renders one complete value; `key` is its member name when it sits in a JSON
 * object; `basic` (top level only) receives a basic value's raw form. */
static int render(sd_bus_message *m, bool bytes, Json *j, const char *key, FILE *text, Property *basic) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;
        if (basic)
                basic->type = type;

        switch (type) {
        case SD_BUS_TYPE_VARIANT:
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                r = render(m, bytes, j, key, text, basic);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);

        case SD_BUS_TYPE_ARRAY:
        case SD_BUS_TYPE_STRUCT: {
                bool dict = type == SD_BUS_TYPE_ARRAY && contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN;
                bool first = true;

                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                if (j)
                        dict ? json_object_open(j, key) : json_array_open(j, key);
                if (text)
                        fputc(dict ? '{' : type == SD_BUS_TYPE_ARRAY ? '[' : '(', text);
                while ((r = sd_bus_message_at_end(m, false)) == 0) {
                        if (text && !first)
                                fputs(", ", text);
                        first = false;
                        if (dict) {
                                _cleanup_free_ char *k = NULL;
                                size_t ks = 0;
                                _cleanup_(fclosep) FILE *kf = NULL;
                                const char *entry;

                                r = sd_bus_message_peek_type(m, NULL, &entry);
                                if (r >= 0)
                                        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, entry);
                                if (r < 0)
                                        return r;
                                kf = open_memstream(&k, &ks);
                                if (!kf)
                                        return -ENOMEM;
                                r = render(m, false, NULL, NULL, kf, NULL);
                                if (r < 0)
                                        return r;
                                if (fclose(TAKE_PTR(kf)) != 0)
                                        return -ENOMEM;
                                if (text)
                                        fprintf(text, "%s: ", k);
                                r = render(m, bytes, j, k, text, NULL);
                                if (r >= 0)
                                        r = sd_bus_message_exit_container(m);
                        } else
                                r = render(m, bytes, j, NULL, text, NULL);
                        if (r < 0)
                                return r;
                }
                if (r < 0)
                        return r;
                if (j)
                        dict ? json_object_close(j) : json_array_close(j);
                if (text)
                        fputc(dict ? '}' : type == SD_BUS_TYPE_ARRAY ? ']' : ')', text);
                return sd_bus_message_exit_container(m);
        }

        default: {
                union {
                        uint8_t y;
                        int16_t n;
                        uint16_t q;
                        int32_t i;
                        uint32_t u;
                        int64_t x;
                        uint64_t t;
                        int b;
                        double d;
                        const char *s;
                        int h;
                } v;
                bool is_signed = false;
                uint64_t u = 0;
                int64_t i = 0;

                r = sd_bus_message_read_basic(m, type, &v);
                if (r < 0)
                        return r;
                switch (type) {
                case SD_BUS_TYPE_BYTE:
                        u = v.y;
                        break;
                case SD_BUS_TYPE_UINT16:
                        u = v.q;
                        break;
                case SD_BUS_TYPE_UINT32:
                        u = v.u;
                        break;
                case SD_BUS_TYPE_UINT64:
                        u = v.t;
                        break;
                case SD_BUS_TYPE_INT16:
                        i = v.n, is_signed = true;
                        break;
                case SD_BUS_TYPE_INT32:
                        i = v.i, is_signed = true;
                        break;
                case SD_BUS_TYPE_INT64:
                        i = v.x, is_signed = true;
                        break;
                case SD_BUS_TYPE_UNIX_FD:
                        i = v.h, is_signed = true;
                        break;
                case SD_BUS_TYPE_BOOLEAN:
                        if (j)
                                json_bool(j, key, v.b);
                        if (text)
                                fputs(v.b ? "yes" : "no", text);
                        if (basic)
                                basic->u = !!v.b;
                        return 0;
                case SD_BUS_TYPE_DOUBLE:
                        if (j)
                                json_double(j, key, v.d);
                        if (text)
                                fprintf(text, "%g", v.d);
                        if (basic)
                                basic->d = v.d;
                        return 0;
                case SD_BUS_TYPE_STRING:
                case SD_BUS_TYPE_OBJECT_PATH:
                case SD_BUS_TYPE_SIGNATURE:
                        if (j)
                                json_string(j, key, v.s);
                        if (text)
                                fputs(v.s, text);
                        if (basic && !(basic->s = strdup(v.s)))
                                return -ENOMEM;
                        return 0;
                default:
                        return -EBADMSG;
                }
                if (is_signed) {
                        if (j)
                                json_i64(j, key, i);
                        if (text)
                                fprintf(text, "%" PRIi64, i);
                        if (basic)
                                basic->i = i, basic->u = (uint64_t) i;
                        return 0;
                }
                if (j)
                        json_u64(j, key, u);
                if (text) {
                        char buf[FORMAT_BYTES_MAX];
                        if (bytes)
                                fputs(format_bytes(buf, sizeof buf, u), text);
                        else
                                fprintf(text, "%" PRIu64, u);
                }
                if (basic)
                        basic->u = u, basic->i = (int64_t) u;
                return 0;
        }
        }
}

int bus_render_value(sd_bus_message *m, bool bytes, FILE *json, FILE *text) {
        Json j = { .f = json };
        return render(m, bytes, json ? &j : NULL, NULL, text, NULL);
}

static int close_memstream(FILE **f, char **buf) {
        int r = fclose(TAKE_PTR(*f));
        if (r != 0 || !*buf)
                return -ENOMEM;
        return 0;
}

int property_list_read(sd_bus_message *m, const Service *s, PropertyList *ret) {
        PropertyList l = {};
        int r;

        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                _cleanup_(fclosep) FILE *jf = NULL, *tf = NULL;
                size_t js = 0, ts = 0;
                const char *name;
                Property *items, *p;
                Json j = {};

                items = realloc(l.items, (l.n + 1) * sizeof *items);
                if (!items) {
                        r = -ENOMEM;
                        break;
                }
                l.items = items;
                p = &l.items[l.n++];
                *p = (Property) {};

                r = sd_bus_message_read_basic(m, SD_BUS_TYPE_STRING, &name);
                if (r < 0)
                        break;
                p->name = strdup(name);
                jf = open_memstream(&p->json, &js);
                tf = open_memstream(&p->text, &ts);
                if (!p->name || !jf || !tf) {
                        r = -ENOMEM;
                        break;
                }
                j.f = jf;
                r = render(m, is_byte_property(s, name), &j, NULL, tf, p);
                if (r >= 0)
                        r = close_memstream(&jf, &p->json);
                if (r >= 0)
                        r = close_memstream(&tf, &p->text);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        break;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                property_list_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}
