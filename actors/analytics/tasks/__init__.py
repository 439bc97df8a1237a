"""The rules of the task types, one module per kind of rule; ``..tasktypes`` registers them under the old names.

``base``: the parameters every type shares, the zones, the rule's signature. ``counting``: 人数统计. ``tripwire``:
绊线人数统计. ``presence``: a track staying in a zone (区域入侵, 徘徊检测, 吸烟检测, 安全帽检测). ``offpost``: 人员离岗.
``abandoned``: 物品遗留. ``fall``: 人员跌倒.
"""
