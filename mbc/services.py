"""Every service's settings class, named once here for ``mbc config show``.

``infra.settings`` defines the base class and the shared sections but knows no service; each
package defines its own class next to its code, and this list is where they meet. A new service
adds its class here.
"""

from __future__ import annotations

from infra.settings import BrokerSettings, ServiceSettings
from learner.ask.settings import AskSettings
from learner.settings import LearnerSettings
from learner.worker.settings import WorkerSettings
from memory_store.settings import StoreSettings
from pipeline.settings import PipelineSettings, ProducerSettings

SERVICE_SETTINGS: tuple[type[ServiceSettings], ...] = (
    BrokerSettings,
    ProducerSettings,
    PipelineSettings,
    StoreSettings,
    LearnerSettings,
    WorkerSettings,
    AskSettings,
)


def registered_services() -> dict[str, type[ServiceSettings]]:
    """Every service's settings class, by section name (its ``[table]`` in the config file)."""
    return {cls.section: cls for cls in SERVICE_SETTINGS}
