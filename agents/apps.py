from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from agents.models import AgentTool
        from agents.selectors import forget_tools

        def tool_written(*, instance: AgentTool, **kwargs: object) -> None:
            forget_tools(agent_id=instance.agent_id)

        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(
                tool_written,
                sender=AgentTool,
                weak=False,
                dispatch_uid=f"agents.tools.{name}",
            )
