/* Host side of the guest agent: dispatch to the transport in use. */
#include <errno.h>
#include <stddef.h>

#include "agent.h"

int agent_call(agent_t *agent, const char *method, json_t *params, json_t **ret_result, char **ret_message) {
        int r = agent ? agent->ops->call(agent, method, params, ret_result, ret_message) : -ENOTCONN;
        json_decref(params);
        return r;
}

void agent_set_event_handler(agent_t *agent, agent_event_cb cb, void *userdata) {
        agent->ops->set_event_handler(agent, cb, userdata);
}

void agent_close(agent_t *agent) {
        if (agent)
                agent->ops->close(agent);
}

void agent_cancel(agent_t *agent) {
        if (agent)
                agent->ops->cancel(agent);
}
