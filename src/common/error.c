/* error.c - names and messages for the pm_err_t table in paramount.h.
 *
 * One X-macro table feeds the enum and both lookups, so a code can never
 * exist without its name and message.
 */
#include "paramount.h"

const char *pm_strerror(int err) {
  switch (err) {
  case PM_OK:
    return "success";
#define PM_ERR_MSG_(name, val, msg)                                            \
  case (val):                                                                  \
    return msg;
    PM_ERRNO_MAP(PM_ERR_MSG_)
#undef PM_ERR_MSG_
  default:
    return "unknown error";
  }
}

const char *pm_errname(int err) {
  switch (err) {
  case PM_OK:
    return "OK";
#define PM_ERR_NAME_(name, val, msg)                                           \
  case (val):                                                                  \
    return "PM_" #name;
    PM_ERRNO_MAP(PM_ERR_NAME_)
#undef PM_ERR_NAME_
  default:
    return "PM_EUNKNOWN";
  }
}
