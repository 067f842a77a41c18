"""Apache Kafka (aiokafka): consumer groups, offsets per partition, rebalances.

``connect("kafka://host:9092")`` returns a :class:`KafkaBroker`;
:class:`KafkaConsumerBridge` adds seeking (:class:`Seek`). The modules:
``broker``, ``session`` (a group member: fetch, pause/resume, commits),
``attempts`` (the attempts record on a topic), ``wire`` (records and headers),
``bridge``, ``changelog`` (entity state on a compacted topic).
"""

from .bridge import KafkaConsumerBridge, Seek
from .broker import KafkaBroker
from .changelog import KafkaChangelogStore

__all__ = ["KafkaBroker", "KafkaChangelogStore", "KafkaConsumerBridge", "Seek"]
