// The member app offline (issue 18): the banner, the queue of answers made while offline,
// and what the server refused of them on reconnect. i18n.js merges them into its tables.

export const OFFLINE_STRINGS = {
  zh: {
    "member.offline.banner": "离线 · 显示的是 {t} 的最新状态",
    "member.offline.never": "离线 · 尚无已保存的状态",
    "member.offline.queued": "{n} 条回复待联网后发送",
    "member.offline.saved": "已离线保存，联网后自动发送。",
    "member.offline.refused": "离线时的回复未被接受（{what}）：{why}",
    "member.offline.sent": "离线时的 {n} 条回复已发送。",
    "member.offline.what.accept": "接受任务",
    "member.offline.what.decline": "婉拒任务",
    "member.offline.what.arrive": "到达签到",
    "member.offline.what.mobilization.ack": "确认动员令",
    "member.offline.what.mobilization.report": "动员报到",
  },
  en: {
    "member.offline.banner": "Offline · showing the state as of {t}",
    "member.offline.never": "Offline · no saved state yet",
    "member.offline.queued": "{n} answer(s) waiting to be sent",
    "member.offline.saved": "Saved offline; it is sent when you are back online.",
    "member.offline.refused": "An answer made offline was not accepted ({what}): {why}",
    "member.offline.sent": "{n} answer(s) made offline were sent.",
    "member.offline.what.accept": "accept",
    "member.offline.what.decline": "decline",
    "member.offline.what.arrive": "arrival",
    "member.offline.what.mobilization.ack": "order acknowledged",
    "member.offline.what.mobilization.report": "reported in",
  },
};
